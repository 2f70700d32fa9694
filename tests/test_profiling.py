"""`coe profile` on a replay pool: profile + router artefacts stored as new versions, then used."""

from __future__ import annotations

import shutil

import pytest

from common.errors import BadInput
from eval.benchmarks import Question, get_benchmark
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT
from orchestrator.workflows.profile import profile_pool, sample

pytestmark = pytest.mark.data


@pytest.fixture
def pool_copy(tmp_path):
    target = tmp_path / "pool"
    shutil.copytree(
        PROJECT_ROOT / "pools" / "replay-small",
        target,
        ignore=shutil.ignore_patterns("profiles", "router", "active.json"),
    )
    return target


def test_profile_then_route(pool_copy, data_dir, replay_file):
    settings = load_settings(pool=pool_copy, data_dir=data_dir, policy="adaptive")
    questions = sample(get_benchmark("mmlu_pro").questions(data_dir), 400, seed=1)
    report = profile_pool(Orchestrator(settings), questions, embedder="hashing-256")
    assert report.source == "replay" and report.questions == 400
    assert report.profile_path.name == "profile.v1.json"
    assert {p.name for p in report.router_paths} == {"classifier.v1.json", "topics.v1.json"}

    again = profile_pool(Orchestrator(settings), questions[:200], embedder="hashing-256")
    assert again.profile_path.name == "profile.v2.json"  # a new version, the old one kept
    assert (pool_copy / "profiles" / "profile.v1.json").is_file()

    decision = Orchestrator(settings).route("Compute the integral of 2x from 0 to 3.")
    assert decision.policy == "adaptive" and decision.skills
    assert 1 <= len(decision.experts) <= 6
    assert all(e.expert in Orchestrator(settings).pool.expert_names for e in decision.experts)


def test_unlabelled_questions_need_no_classifier(pool_copy, data_dir):
    settings = load_settings(pool=pool_copy, data_dir=data_dir)
    questions = [q.model_copy(update={"category": None}) for q in get_benchmark("mmlu_pro").questions(data_dir)[:50]]
    with pytest.raises(BadInput, match="--no-classifier"):
        profile_pool(Orchestrator(settings), questions, embedder="hashing-256")


def test_shipped_replay_pool_routes(data_dir):
    """pools/replay-small ships a profile and classifier built by `coe profile -n 3000`."""
    coe = Orchestrator(
        load_settings(pool=PROJECT_ROOT / "pools" / "replay-small", data_dir=data_dir, policy="topk", k=2)
    )
    decision = coe.route("Which enzyme unwinds DNA during replication?")
    assert decision.top_skill in {"biology", "health", "chemistry"} or decision.top_skill.startswith("topic:")
    assert len(decision.experts) == 2


def test_router_candidates_are_the_pools_experts(tmp_path, data_dir):
    """A profile naming a model the pool no longer lists as an expert never routes to it; a pool
    expert the profile lacks can still be chosen."""
    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "replay-small", pool)
    text = (pool / "pool.toml").read_text()
    (pool / "pool.toml").write_text(
        text.replace('"yi-6b-chat"]', '"yi-6b-chat", "smollm2"]').replace(
            'experts = ["meta-llama-3_1-8b-instruct", ', "experts = ["
        )
    )
    coe = Orchestrator(load_settings(pool=pool, data_dir=data_dir, policy="all"))
    decision = coe.route("What is 2 + 2?")
    names = {e.expert for e in decision.experts}
    assert "meta-llama-3_1-8b-instruct" not in names and "smollm2" in names
    assert names == set(coe.pool.expert_names)


def test_live_experts_are_profiled_through_the_pipeline(tmp_path):
    """Live experts answer through the pipeline (every expert asked, each model loaded once) and
    each answer is judged by the question's judge; failed generations are not counted."""
    from batching import FakeEngine
    from orchestrator.workflows.profile import live_verdicts

    said = {"gemma3": "B", "smollm2": "$1,000.00"}
    questions = [
        Question(id=f"n{i}", benchmark="free", text=f"How much is item {i}?", answer="1000", category="cost")
        for i in range(3)
    ]
    bench = numbers_benchmark()
    engines: dict[str, FakeEngine] = {}

    def factory(spec, cpus=None):
        fail = (lambda request: request.question_id == "n2") if spec.name == "gemma3" else None
        text = f"The answer is {said[spec.name]}"
        return engines.setdefault(spec.name, FakeEngine(spec, answer=lambda spec, request: text, fail_on=fail))

    settings = load_settings(pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs")
    verdicts = live_verdicts(Orchestrator(settings, engine_factory=factory), questions, bench)
    assert sorted(verdicts) == sorted(
        [("n0", "gemma3", False), ("n1", "gemma3", False)] + [(f"n{i}", "smollm2", True) for i in range(3)]
    )
    assert {name: e.loads for name, e in engines.items()} == {"gemma3": 1, "smollm2": 1}


def numbers_benchmark():
    from eval.answers import AnswerKind, AnswerRule
    from eval.record import Benchmark

    return Benchmark(
        name="free",
        version="1",
        splits=("test",),
        load=lambda data, split: [],
        prompt=lambda q: f"{q.text}\nEnd with 'The answer is N'.",
        answers=AnswerRule(AnswerKind.NUMBER),
    )
