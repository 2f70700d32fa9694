"""The pipeline end to end on the fast tier: fake engines stand in for vLLM (the real tier
runs the same path on real models in tests/real/test_ask.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batching import FakeEngine
from common.errors import BadInput, GenerationFailed
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.settings import PROJECT_ROOT


class Engines:
    """Engine factory that keeps every engine it made, so tests can count loads."""

    def __init__(self, fail_models=(), answers=None):
        self.made: dict[str, FakeEngine] = {}
        self.fail_models = set(fail_models)
        self.answers = answers or {}

    def __call__(self, spec):
        fail = (lambda request: True) if spec.name in self.fail_models else None
        answer = self.answers.get(spec.name)
        engine = FakeEngine(spec, answer=answer, fail_on=fail) if answer else FakeEngine(spec, fail_on=fail)
        self.made.setdefault(spec.name, engine)
        return self.made[spec.name]


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=8000, policy="all"
    )


def questions(n):
    return [
        Question(id=f"q{i}", benchmark="free", text=f"Question number {i}?", options=("yes", "no", "maybe"), answer="A")
        for i in range(n)
    ]


def test_answer_runs_every_stage(settings):
    engines = Engines()
    answer = Orchestrator(settings, engine_factory=engines).answer("Is water wet?", options=["yes", "no"])
    trace = answer.trace
    assert [c.expert for c in trace.experts] == ["gemma3", "smollm2"]
    assert all(c.text and c.tokens_out > 0 for c in trace.experts)
    assert trace.aggregator == "smollm2" and trace.aggregation.method == "synthesis:smollm2"
    assert "Is water wet?" in trace.aggregation.prompt
    assert all(c.text.split("The answer is")[0].strip() in trace.aggregation.prompt for c in trace.experts)
    assert answer.choice in {"A", "B"} and answer.text
    assert set(trace.timings.model_dump()) == {"route", "load", "experts", "aggregate", "run"}
    assert trace.route.expert_names == ["gemma3", "smollm2"] and trace.policy == "all"  # the typed decision
    assert trace.loads == 2  # smollm2 answers and aggregates on one load
    assert "Aggregator: smollm2" in answer.summary()


def test_batch_loads_each_model_once(settings):
    engines = Engines()
    answers = Orchestrator(settings, engine_factory=engines).answer_batch(questions(12))
    assert len(answers) == 12 and all(a.error is None for a in answers)
    assert {name: e.loads for name, e in engines.made.items()} == {"smollm2": 1, "gemma3": 1}
    # each model got its whole list of expert requests in one call
    assert len(engines.made["gemma3"].batches) == 1 and len(engines.made["gemma3"].batches[0]) == 12


def test_failed_expert_is_dropped_with_reason(settings):
    engines = Engines(fail_models={"gemma3"})
    answer = Orchestrator(settings, engine_factory=engines).answer("Pick one.", options=["a", "b"])
    failed = {c.expert: c.error for c in answer.trace.experts}
    assert failed["gemma3"] and "gemma3" in failed["gemma3"]
    assert failed["smollm2"] is None
    assert answer.trace.aggregation.method.startswith("synthesis")
    assert answer.trace.aggregation.inputs == ("smollm2",)


def test_aggregator_failure_falls_back_to_vote(settings):
    def fine(spec, request):
        if "Several assistants" in request.text:
            raise AssertionError("unreachable")
        return "The answer is (B)."

    def agg_fails(request):
        return "Several assistants" in request.text

    class Factory(Engines):
        def __call__(self, spec):
            engine = FakeEngine(spec, answer=fine, fail_on=agg_fails)
            return self.made.setdefault(spec.name, engine)

    answer = Orchestrator(settings, engine_factory=Factory()).answer("Pick.", options=["a", "b"], skip_consensus=False)
    assert answer.choice == "B"
    assert answer.trace.aggregation.method == "majority"
    assert answer.trace.aggregation.fallback


def test_no_expert_answer_is_an_error(settings):
    engines = Engines(fail_models={"gemma3", "smollm2"})
    with pytest.raises(GenerationFailed, match="no expert answer arrived"):
        Orchestrator(settings, engine_factory=engines).answer("Anything?")


@pytest.mark.parametrize(
    ("question", "options", "message"),
    [
        ("", None, "question is empty"),
        ("   ", None, "question is empty"),
        (42, None, "question must be a string, got int"),
        ("x" * 20_000, None, "question is 20000 characters long; the limit is 16000"),
        ("ok?", "abc", "options must be a list"),
        ("ok?", ["one"], "at least two"),
        ("ok?", ["a", ""], r"options\[1\]"),
    ],
)
def test_bad_input(settings, question, options, message):
    engines = Engines()
    with pytest.raises(BadInput, match=message):
        Orchestrator(settings, engine_factory=engines).answer(question, options=options)
    assert not engines.made  # rejected before any model was touched


def test_repeated_ids_rejected(settings):
    qs = questions(2)
    with pytest.raises(BadInput, match="repeated: 'q0'"):
        Orchestrator(settings, engine_factory=Engines()).answer_batch([qs[0], qs[0]])


def test_resume_skips_finished_work(settings):
    engines = Engines()
    coe = Orchestrator(settings, engine_factory=engines)
    first = coe.answer_batch(questions(4), run_id="r1")
    again_engines = Engines()
    again = Orchestrator(settings, engine_factory=again_engines).answer_batch(questions(4), run_id="r1")
    assert [a.text for a in again] == [a.text for a in first]
    assert not any(e.batches for e in again_engines.made.values())  # nothing regenerated


def test_plan_shows_loads(settings):
    plan = Orchestrator(settings, engine_factory=Engines()).plan(questions(5))
    assert plan.predicted_loads == 2
    assert "smollm2" in plan.render()


def test_cli_bad_input_is_one_line():
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "ask", "  "], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "coe: error: question is empty"
    assert "Traceback" not in done.stderr


def test_cli_route_unknown_policy():
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "route", "hi", "--policy", "topkk"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "did you mean 'topk'" in done.stderr and "Traceback" not in done.stderr


def test_failed_expert_reason_reaches_the_aggregation_trace(settings, caplog):
    engines = Engines(fail_models={"gemma3"})
    with caplog.at_level("INFO", logger="aggregators.synthesis"):
        Orchestrator(settings, engine_factory=engines).answer("Pick one.", options=["a", "b"])
    assert any("gemma3: engine 'gemma3' failed" in r.getMessage() for r in caplog.records)


def test_stored_aggregator_choice_is_used(tmp_path):
    import shutil

    from aggregators import AggregatorChoice, CandidateScore, SynthesisOptions
    from orchestrator.artefacts import PoolArtefacts

    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "default", pool)
    PoolArtefacts(pool).save_choice(
        AggregatorChoice(
            created="2026-11-22T00:00:00Z",
            seed=0,
            n_wrong=2,
            options=SynthesisOptions(),
            candidates={"gemma3": CandidateScore.of(3, 4), "smollm2": CandidateScore.of(1, 4)},
            best="gemma3",
        )
    )
    settings = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=8000, policy="all")
    engines = Engines()
    answer = Orchestrator(settings, engine_factory=engines).answer("Pick.", options=["a", "b"])
    assert answer.trace.aggregator == "gemma3"
    assert answer.trace.aggregation.method == "synthesis:gemma3"
    assert {n: e.loads for n, e in engines.made.items()} == {"gemma3": 1, "smollm2": 1}


def test_gpu_footprint_is_vllms_reserved_share(vllm_spec):
    from orchestrator.resources import footprints_mb

    specs = {"a": vllm_spec("a"), "b": vllm_spec("b")}
    assert footprints_mb(specs, None) == {}
    assert footprints_mb(specs, 80_000) == {"a": 0.85 * 80_000, "b": 0.85 * 80_000}


def test_a_warm_session_keeps_engines_loaded_between_calls(tmp_path):
    settings = load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=20000, policy="all"
    )  # both default models fit
    engines = Engines()
    with Orchestrator(settings, engine_factory=engines) as coe:
        first = coe.answer("Is water wet?", options=["yes", "no"])
        second = coe.answer("Is fire hot?", options=["yes", "no"])
        assert first.trace.loads == 2 and second.trace.loads == 0  # the second call loads nothing
        assert all(e.loaded for e in engines.made.values())
    assert {n: (e.loads, e.loaded) for n, e in engines.made.items()} == {
        "gemma3": (1, False),
        "smollm2": (1, False),
    }  # unloaded on leaving the session


def test_a_warm_session_unloads_what_does_not_fit(tmp_path):
    settings = load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=9000, policy="all"
    )  # one default model at a time
    made: list[FakeEngine] = []
    resident: list[int] = []

    class Counted(FakeEngine):
        def load(self) -> None:
            super().load()
            resident.append(sum(e.loaded for e in made))

    def factory(spec):
        made.append(Counted(spec))
        return made[-1]

    with Orchestrator(settings, engine_factory=factory) as coe:
        coe.answer("Is water wet?", options=["yes", "no"])
        assert sum(e.loaded for e in made) == 1  # the last model stays warm...
        coe.answer("Is fire hot?", options=["yes", "no"])
    assert resident and max(resident) == 1  # ...but never beside another: the budget holds one
    assert not any(e.loaded for e in made)


def test_without_a_session_every_call_gives_its_engines_back(settings):
    engines = Engines()
    coe = Orchestrator(settings, engine_factory=engines)
    coe.answer("Is water wet?", options=["yes", "no"])
    assert not any(e.loaded for e in engines.made.values())


def test_the_keyword_scorer_routes_through_the_sdk(tmp_path):
    """Symbolic-MoE's routing: the aggregator annotates the question with keywords (here a fake
    engine writes them), each mapped to the nearest skill of the profile, which picks the expert."""
    import shutil

    from orchestrator.artefacts import PoolArtefacts
    from skills import ProfileBuilder

    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "default", pool)
    builder = ProfileBuilder(["smollm2", "gemma3"])
    for i in range(40):
        builder.add("gemma3", ["law"], i < 30)
        builder.add("smollm2", ["law"], i < 10)
        builder.add("gemma3", ["physics"], i < 8)
        builder.add("smollm2", ["physics"], i < 28)
    PoolArtefacts(pool).save_profile(builder.build())
    settings = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20000)

    def keywords(spec, request):
        return "contract law, law, torts" if "breach of contract" in request.text else "physics, mechanics"

    made: list[FakeEngine] = []

    def factory(spec):
        made.append(FakeEngine(spec, answer=keywords))
        return made[-1]

    coe = Orchestrator(settings, engine_factory=factory)
    law = coe.route("Is a breach of contract a tort?", policy="topk", k=1, scorer="keywords")
    assert law.expert_names == ["gemma3"] and max(law.skills, key=law.skills.get) == "law"
    physics = coe.route("How fast does a dropped ball fall?", policy="topk", k=1, scorer="keywords")
    assert physics.expert_names == ["smollm2"] and "physics" in physics.skills
    assert {e.spec.name for e in made} == {"smollm2"}  # the aggregator annotated
    with pytest.raises(BadInput, match="scorer must be"):
        coe.route("Anything?", scorer="vibes")


def test_a_reused_run_id_regenerates_what_the_changed_pool_changed(tmp_path):
    import shutil

    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "default", pool)
    settings = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20000, policy="all")
    Orchestrator(settings, engine_factory=Engines()).answer_batch(questions(4), run_id="same")
    unchanged = Engines()
    Orchestrator(settings, engine_factory=unchanged).answer_batch(questions(4), run_id="same")
    assert not any(e.batches for e in unchanged.made.values())  # the same pool: nothing regenerated
    toml = (pool / "pool.toml").read_text(encoding="utf-8")
    (pool / "pool.toml").write_text(toml.replace("max_tokens = 120", "max_tokens = 90"), encoding="utf-8")
    changed = Engines()
    answers = Orchestrator(
        load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20000, policy="all"),
        engine_factory=changed,
    ).answer_batch(questions(4), run_id="same")
    assert [len(b) for b in changed.made["gemma3"].batches] == [4]  # gemma3's sampling changed: asked again
    smollm2 = [x for e in [changed.made.get("smollm2")] if e is not None for b in e.batches for x in b]
    assert not any("/expert/" in x for x in smollm2)  # smollm2's own expert answers were reused
    # (the fake's answers ignore max_tokens: the aggregations are asked alike and come from the
    # cache, so smollm2 is not even loaded)
    assert all(a.error is None for a in answers)
