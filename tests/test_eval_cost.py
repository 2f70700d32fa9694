"""``coe eval`` against cost, on the shipped ``replay-mixed`` pool (recorded MMLU-Pro answers of
five models with their active parameters declared, profiled): every method's cost, the cost
ratio against the costliest expert, a cascade played on its ladder's answers (the same
decisions as the SDK's real rounds), and a cascade's LLM aggregation reading its voters only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batching import make_engine
from batching.engines.fake import FakeEngine
from common.requests import Request
from eval import load_benchmark, stratified_sample
from eval.report import summarise
from eval.results import read_results, read_run
from orchestrator import Orchestrator, load_settings
from orchestrator.cli import main
from orchestrator.evaluation import EvalConfig, evaluate
from orchestrator.settings import shipped_pool
from orchestrator.task_ids import aggregate_task_id

QUESTIONS = 40
POOL = shipped_pool("replay-mixed")
COSTS = {
    "meta-llama-3_1-70b-instruct": 70.0,
    "mixtral-8x7b-instruct": 13.0,
    "meta-llama-3_1-8b-instruct": 8.0,
    "mathstral-7b": 7.0,
    "phi-3-mini-4k-instruct": 3.8,
}
STRONG = "meta-llama-3_1-70b-instruct"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = load_settings().data_dir
    if not (data_dir / "replay").is_dir():
        pytest.skip(f"data {data_dir} not present")
    out = tmp_path_factory.mktemp("cost") / "out"
    argv = ["eval", "mmlu_pro", "--pool", str(POOL), "--policy", "cascade", "--aggregator", "majority"]
    argv += ["--baselines", "-n", str(QUESTIONS), "--out", str(out), "--data-dir", str(data_dir)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return out


@pytest.mark.data
def test_every_method_costs_its_experts_declared_costs(run: Path) -> None:
    info, results = read_run(run), read_results(run)
    assert (info.cost_unit, info.cost_reference, info.costs) == ("active_params_b", STRONG, COSTS)
    assert len(results) == QUESTIONS
    for result in results:
        assert {e.expert: e.cost for e in result.experts} == {e.expert: COSTS[e.expert] for e in result.experts}
        for name, method in result.methods.items():
            assert method.cost == pytest.approx(sum(COSTS[e] for e in method.experts)), name
        assert result.methods["oracle"].cost == pytest.approx(sum(COSTS.values()))
    summary = summarise(info, results)
    assert summary.reference_cost == 70.0
    for m in summary.methods:
        expected = sum(r.methods[m.name].cost for r in results) / len(results)
        assert m.cost_per_question == pytest.approx(expected)
        assert m.cost_ratio == pytest.approx(expected / 70.0)
        assert m.experts_per_question == sum(len(r.methods[m.name].experts) for r in results) / len(results)
    assert summary.method("all-majority").cost_ratio == pytest.approx(sum(COSTS.values()) / 70.0)
    assert {e.name: (e.answered, e.cost_per_answer) for e in summary.experts} == {
        name: (QUESTIONS, cost) for name, cost in sorted(COSTS.items())
    }
    strong = {r.question_id: next(e.correct for e in r.experts if e.expert == STRONG) for r in results}
    for m in summary.methods:  # every answer paired: all-majority and the oracle asked the reference everywhere
        right = sum(r.methods[m.name].correct for r in results)
        assert m.accuracy_ratio == pytest.approx(right / sum(strong.values()))
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["cost_reference"] == STRONG and "cost_ratio" in report["methods"][0]
    assert report["reference_choice"] == "costliest" and "accuracy_ratio" in report["methods"][0]


@pytest.mark.data
def test_a_cascade_asks_a_prefix_of_its_ladder_as_the_sdk_rounds_do(run: Path) -> None:
    results = {r.question_id: r for r in read_results(run)}
    settings = load_settings(pool=POOL, runs_dir=run.parent / "sdk")
    bench = load_benchmark("mmlu_pro")
    items = [q for q in bench.questions(settings.data_dir, "test") if q.id in results]
    with Orchestrator(settings) as coe:
        decisions = {
            d.question_id: d for d in coe.router("cascade").route([q.text for q in items], [q.id for q in items])
        }
        answers = coe.answer_batch(items, benchmark=bench, policy="cascade", aggregation="majority")
    climbed = 0
    for answer in answers:
        ours = results[answer.question_id].methods["ours"]
        whole = [c.expert for c in decisions[answer.question_id].all_experts]
        assert list(ours.experts) == whole[: len(ours.experts)]  # a prefix of the ladder
        assert ours.cost == pytest.approx(sum(COSTS[e] for e in ours.experts))
        steps = ours.escalations
        assert [s.escalate for s in steps] == [True] * (len(steps) - 1) + [False]
        # the same decisions as the SDK's real rounds
        assert ours.experts == tuple(answer.trace.route.expert_names)
        assert [s.escalate for s in steps] == [e.escalate for e in answer.trace.escalations]
        assert ours.final == answer.choice
        assert answer.trace.cost == pytest.approx(ours.cost)
        climbed += len(steps) > 1
    assert 0 < climbed < len(answers)  # some climbed, some stopped at the first rung


@pytest.mark.data
def test_the_report_shows_accuracy_against_cost(run: Path) -> None:
    text = (run / "report.md").read_text(encoding="utf-8")
    assert "| cost/question | cost ratio |" in text
    assert f"Cost ratio: against the pool's costliest expert alone, {STRONG} (70 per answer)" in text
    assert (
        f"Reference expert: {STRONG}, the pool's costliest expert; it gave {QUESTIONS} of the {QUESTIONS} answers"
        in text
    )
    assert "| cost/question | cost ratio | accuracy ratio |" in text
    assert "Cascades climbed past their first rung on: ours" in text
    assert (run / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.data
def test_a_cascade_synthesis_reads_its_voters_only(tmp_path: Path) -> None:
    """The LLM aggregation of a cascade method waits on its whole ladder but is composed from the
    answers of its voters alone (a fake aggregator records what it was shown)."""
    settings = load_settings(pool=POOL, runs_dir=tmp_path / "runs")
    if not (settings.data_dir / "replay").is_dir():
        pytest.skip("replay data not present")
    shown: dict[str, str] = {}

    def aggregate(spec, request: Request) -> str:
        shown[request.id] = request.text
        return "The answer is (A)."

    def engines(spec, cpus=None):
        return (
            FakeEngine(spec, aggregate) if spec.name == "smollm2" else make_engine(spec, cache_dir=settings.cache_dir)
        )

    bench = load_benchmark("mmlu_pro")
    questions = stratified_sample(bench.questions(settings.data_dir, "test")[:400], 12, 0)
    config = EvalConfig(
        benchmark="mmlu_pro", split="test", limit=12, pool_dir=str(POOL), policy="cascade", skip_agreement=None
    )
    with Orchestrator(settings, engine_factory=engines) as coe:
        done = evaluate(coe, bench, questions, config, tmp_path / "out")
    replaced = 0
    for result in done.results:
        ours = result.methods["ours"]
        assert ours.aggregation == "synthesis" and ours.voters
        prompt = shown[aggregate_task_id(result.question_id, 0, "ours")]
        texts = {e.expert: e.text.strip() for e in result.experts}
        for expert in ours.experts:
            own = texts[expert][len(texts[expert]) // 2 :][:80]  # a stretch of its own reasoning
            if any(own in texts[other] for other in ours.experts if other != expert):
                continue
            assert (own in prompt) == (expert in ours.voters), expert
        replaced += set(ours.voters) != set(ours.experts)
    assert replaced  # some cascade climbed to a rung that replaced the earlier answers
