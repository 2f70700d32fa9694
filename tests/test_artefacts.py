"""Versioned artefacts: written atomically, new versions never overwrite, malformed files name
file and field; a pool's artefacts: one owner of the layout, no pickle ever opened."""

from __future__ import annotations

import json
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from common.artefacts import latest, read_model, replace_file, versions, write_new_version
from common.errors import ConfigError, NotFound, config_error, field_path
from orchestrator.pools.artefacts import PoolArtefacts
from orchestrator.pools.settings import shipped_pool


class Thing(BaseModel):
    name: str
    size: int


def test_replace_file_writes_text_or_its_pieces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out" / "lines.jsonl"
    replace_file(path, "old\n")
    replace_file(path, (f"{n}\n" for n in range(3)))  # pieces, written one after another
    assert path.read_text() == "0\n1\n2\n"

    def failing():
        yield "half\n"
        raise OSError("disk gone")

    with pytest.raises(ConfigError, match="lines.jsonl"):
        replace_file(path, failing())
    assert path.read_text() == "0\n1\n2\n"  # the old content stands
    assert sorted(p.name for p in path.parent.iterdir()) == ["lines.jsonl"]


def test_versions_grow_and_latest(tmp_path):
    assert versions(tmp_path / "none", "thing") == {}
    first = write_new_version(tmp_path, "thing", '{"name": "a", "size": 1}')
    second = write_new_version(tmp_path, "thing", '{"name": "b", "size": 2}')
    (tmp_path / "other.v9.json").write_text("{}")
    assert (first.name, second.name) == ("thing.v1.json", "thing.v2.json")
    assert read_model(first, Thing).name == "a"  # untouched by the second write
    assert latest(tmp_path, "thing", "thing") == second
    with pytest.raises(NotFound, match="no widget in"):
        latest(tmp_path, "widget", "widget")


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1]", "expected a JSON object"), ('{"name": "a", "size": "x"}', "size:")],
)
def test_malformed(tmp_path, text, message):
    path = tmp_path / "thing.v1.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_model(path, Thing)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    def failing(version: int) -> str:
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError):
        write_new_version(tmp_path, "thing", failing)
    assert list(tmp_path.iterdir()) == []  # no version, no temporary file
    path = write_new_version(tmp_path, "thing", lambda version: f'{{"name": "v{version}", "size": {version}}}')
    assert read_model(path, Thing) == Thing(name="v1", size=1)
    assert [p.name for p in tmp_path.iterdir()] == ["thing.v1.json"]


def test_concurrent_writers_never_share_a_version(tmp_path):
    texts = [f'{{"name": "w{i}", "size": {i}}}' for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda text: write_new_version(tmp_path, "thing", text), texts))
    assert sorted(p.name for p in paths) == sorted(f"thing.v{i}.json" for i in range(1, 17))
    assert sorted(read_model(p, Thing).size for p in paths) == list(range(16))
    assert len(list(tmp_path.iterdir())) == 16


def test_config_error_is_one_line_naming_where_and_field():
    class Inner(BaseModel):
        kind: Literal["a"]

    class Outer(BaseModel):
        items: list[Inner]
        size: int

    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"items": [{"kind": "a"}, {"kind": "b"}], "size": "x"})
    error = config_error(info.value, "file.json")
    assert isinstance(error, ConfigError)
    assert str(error).startswith("file.json: items[1].kind: Input should be 'a'")
    assert str(error).endswith("(and 1 more problem)")
    assert field_path(("models", 1, "source", "http", "base_url"), skip=("http",)) == "models[1].source.base_url"


# -- a pool's artefacts --------------------------------------------------------------------------

TRAIN = [
    ("integrate the polynomial and find the derivative", "math"),
    ("solve the equation for x using algebra", "math"),
    ("compute the integral of the function", "math"),
    ("find the derivative of the function at x", "math"),
    ("the court ruled the contract void", "law"),
    ("a tort claim against the defendant in court", "law"),
    ("the plaintiff sued for breach of contract", "law"),
    ("is the statute constitutional under the court ruling", "law"),
]


class Planted:
    """Unpickled, it creates ``path``: what a planted pickle could do instead of a classifier."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def trained_pool(tmp_path) -> Path:
    """The default pool's pool.toml with a profile and a router trained on hashed embeddings."""
    from eval.benchmarks import Question
    from router import train_router
    from skills import HashingEmbedder, ProfileBuilder

    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(shipped_pool("default") / "pool.toml", pool / "pool.toml")
    questions = [
        Question(id=str(i), benchmark="mmlu_pro", text=text, answer="A", category=label)
        for i, (text, label) in enumerate(TRAIN * 3)
    ]
    arts = train_router(questions, HashingEmbedder(128), n_topics=2, seed=0)
    builder = ProfileBuilder(["smollm2", "gemma3"])
    for q in questions:
        builder.add("smollm2", arts.skills_of[q.id], q.category == "law")
        builder.add("gemma3", arts.skills_of[q.id], q.category == "math")
    stored = PoolArtefacts(pool)
    stored.save_profile(builder.build())
    stored.save_router(arts)
    return pool


def _route(pool: Path, question: str):
    from orchestrator import Orchestrator, load_settings

    return Orchestrator(load_settings(pool=pool, policy="topk", k=1)).route(question)


def test_pool_layout_and_routing_from_stored_artefacts(trained_pool):
    names = sorted(str(p.relative_to(trained_pool)) for p in trained_pool.rglob("*") if p.is_file())
    assert names == ["pool.toml", "profiles/profile.v1.json", "router/classifier.v1.json", "router/topics.v1.json"]
    assert _route(trained_pool, "the court ruled on the contract").expert_names == ["smollm2"]
    assert _route(trained_pool, "the derivative of the integral").expert_names == ["gemma3"]


def test_a_planted_pickle_is_never_opened(trained_pool, tmp_path, caplog):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Planted(probe))).close()
    assert probe.exists()  # the payload does run code when unpickled
    marker = tmp_path / "planted-code-ran"
    payload = pickle.dumps(Planted(marker))
    planted = [
        trained_pool / "router" / "classifier.v1.joblib",
        trained_pool / "router" / "classifier.v2.pkl",
        trained_pool / "profiles" / "profile.v1.pkl",
        trained_pool / "aggregator.pickle",
    ]
    for path in planted:
        path.write_bytes(payload)
    with caplog.at_level("WARNING", logger="orchestrator.pools.pool"):
        decision = _route(trained_pool, "the court ruled on the contract")
    assert not marker.exists()
    assert decision.expert_names == ["smollm2"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == len(planted) and all(any(str(p) in w for w in warned) for p in planted)


def test_an_old_pickled_classifier_is_one_config_error(trained_pool):
    """A classifier of format 1 (its model in a pickle beside the JSON) is refused with one line."""
    old = {
        "format_version": 1,
        "labels": ["law", "mathematics"],
        "embedder": "hashing-128",
        "n_train": 24,
        "calibrated": True,
        "sklearn_version": "1.9.1",
    }
    path = trained_pool / "router" / "classifier.v2.json"
    path.write_text(json.dumps(old))
    (trained_pool / "router" / "classifier.v2.joblib").write_bytes(pickle.dumps(Planted(trained_pool / "x")))
    with pytest.raises(ConfigError) as info:
        _route(trained_pool, "anything")
    message = str(info.value)
    assert message.startswith(f"{path}: format_version:") and "pickle" in message and "\n" not in message
    assert not (trained_pool / "x").exists()


@pytest.mark.parametrize(
    ("relative", "content", "expected"),
    [
        ("router/topics.v1.json", "{not json", "not valid JSON"),
        (
            "router/topics.v1.json",
            '{"format_version": 2, "meta": {"embedder": "hashing-128", "n_topics": 2, '
            '"n_train": 24}, "centres": [[1.0], [0.5, 0.5]]}',
            "centres",
        ),
        ("profiles/profile.v1.json", "[1, 2]", "expected a JSON object"),
        ("router/classifier.v1.json", '{"format_version": 2, "meta": {}}', "meta.labels"),
    ],
)
def test_malformed_artefact_is_one_line_naming_file_and_field(trained_pool, relative, content, expected):
    (trained_pool / relative).write_text(content)
    with pytest.raises(ConfigError) as info:
        _route(trained_pool, "anything")
    assert str(trained_pool / relative) in str(info.value) and expected in str(info.value)
    assert "\n" not in str(info.value)


def _choice(best: str = "gemma3"):
    from aggregators import AggregatorChoice, CandidateScore, SynthesisOptions

    return AggregatorChoice(
        created="2026-11-22T00:00:00Z",
        seed=0,
        n_wrong=2,
        options=SynthesisOptions(),
        candidates={"gemma3": CandidateScore.of(3, 4), "smollm2": CandidateScore.of(1, 4)},
        best=best,
    )


def test_aggregator_choice_is_versioned(tmp_path):
    stored = PoolArtefacts(tmp_path / "pool")
    assert stored.latest_choice() is None
    first = stored.save_choice(_choice())
    assert first == tmp_path / "pool" / "aggregator" / "choice.v1.json"
    loaded = stored.latest_choice()
    assert loaded.revision == 1 and loaded.candidates == _choice().candidates and loaded.best == "gemma3"
    stored.save_choice(_choice("smollm2"))
    assert stored.latest_choice().revision == 2 and stored.latest_choice().best == "smollm2"
    assert json.loads(first.read_text())["revision"] == 1 and json.loads(first.read_text())["best"] == "gemma3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"version": 1, "created": "x", "seed": 0}', "n_wrong"),
    ],
)
def test_malformed_choice_is_a_config_error_and_never_overwritten(tmp_path, content, message):
    stored = PoolArtefacts(tmp_path)
    bad = tmp_path / "aggregator" / "choice.v1.json"
    bad.parent.mkdir()
    bad.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        stored.latest_choice()
    assert str(bad) in str(info.value)
    assert stored.save_choice(_choice()).name == "choice.v2.json"
    assert bad.read_text() == content
    assert stored.latest_choice().revision == 2


def test_new_versions_do_not_switch_routing_unless_activated(tmp_path):
    from common.errors import NotFound
    from orchestrator.pools.artefacts import PoolArtefacts
    from skills import ProfileBuilder

    stored = PoolArtefacts(tmp_path)
    assert stored.active() is None and stored.latest_profile() is None
    stored.save_profile(ProfileBuilder(["a"], source="first").build())
    stored.save_profile(ProfileBuilder(["a"], source="second").build())
    assert stored.latest_profile().source == "second"  # never pinned: the newest routes
    stored.activate(profile=1)
    assert stored.latest_profile().source == "first"  # pinned: a newer version does not switch it
    stored.save_profile(ProfileBuilder(["a"], source="third").build())
    assert stored.latest_profile().source == "first"
    stored.activate(profile=3)
    assert stored.latest_profile().source == "third" and stored.active().profile == 3
    with pytest.raises(NotFound, match="has no profile v7 .it has: v1, v2, v3"):
        stored.activate(profile=7)
    assert stored.active().profile == 3  # a refused activation changes nothing


def test_profiling_uses_a_part_disjoint_from_evaluation():
    from eval import partition
    from eval.benchmarks import Question

    items = [Question(id=str(i), benchmark="b", text=f"q{i}", answer="A") for i in range(101)]
    profiling, evaluation = partition(items)
    assert len(profiling) == 50 and len(evaluation) == 51
    assert not {q.id for q in profiling} & {q.id for q in evaluation}
    assert partition(list(reversed(items))) == (profiling, evaluation)  # fixed, whatever the order


def test_pins_are_concrete_so_a_new_kind_never_routes_unasked(tmp_path):
    from orchestrator.pools.artefacts import PoolArtefacts
    from skills import ProfileBuilder

    stored = PoolArtefacts(tmp_path)
    stored.save_profile(ProfileBuilder(["a"], source="first").build())
    pinned = stored.activate(profile=1)
    assert (pinned.profile, pinned.classifier, pinned.topics) == (1, 0, 0)  # none of those yet
    assert stored.latest_classifier() is None


def test_a_warm_engine_bound_to_other_cores_is_not_reused():
    from batching import ExpertSpec, FakeEngine
    from batching.warm import WarmEngines

    class Bound(FakeEngine):
        def __init__(self, spec, cpus=None):
            super().__init__(spec)
            self.cpus = cpus

    spec = ExpertSpec(name="m", source={"kind": "vllm", "model": "x"}, memory_mb=10)
    warm = WarmEngines(100, {"m": 10})
    engine = Bound(spec, cpus=None)
    engine.load()
    assert warm.give_back(engine)
    assert warm.take(spec, (0,)) is None and not engine.loaded  # bound to all cores, wanted core 0
    again = Bound(spec, cpus=(0,))
    again.load()
    warm.give_back(again)
    assert warm.take(spec, (0,)) is again
