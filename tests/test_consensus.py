"""Skipping the aggregator on consensus: when the experts' answers agree by the judge, their
answer stands and the aggregator model is not called (nor loaded); the trace says so and why.
Never when they disagree, never on blanks, never with --no-skip."""

from __future__ import annotations

import pytest

from aggregators import ExpertAnswer
from aggregators.synthesis import consensus
from batching import ExpertSpec, FakeEngine
from common.answers import AnswerKind, Judge
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.settings import PROJECT_ROOT

NUMBER = Judge(AnswerKind.NUMBER)


def said(*choices: str | None) -> list[ExpertAnswer]:
    return [ExpertAnswer(expert=f"e{i}", text=f"... {c}", choice=c) for i, c in enumerate(choices)]


def test_the_rule():
    ids = ["t0", "t1", "t2"]
    assert consensus(said("7", "7.00", "$7"), ids, 1.0, NUMBER) is not None  # one answer, written three ways
    assert consensus(said("7", "7", "8"), ids, 1.0, NUMBER) is None  # not unanimous
    assert consensus(said("7", "7", "8"), ids, 0.6, NUMBER) is not None  # two thirds is enough at 0.6
    assert consensus(said("7", "7", None), ids, 1.0, NUMBER) is None  # a blank is no agreement
    assert consensus(said(None, None, None), ids, 0.6, NUMBER) is None  # blanks never agree
    assert consensus(said("7", "7", "7"), ids, None, NUMBER) is None  # never asked to skip
    assert consensus(said("7"), ids[:1], 1.0, NUMBER) is None  # one answer is no consensus
    why, stands = consensus(said("7", "7", "7"), ids, 1.0, NUMBER)  # type: ignore[misc]
    assert why == "unanimous: 3 of 3 experts answered 7" and stands in ids


class Engines:
    """Fake engines; the experts answer as ``answers`` says (by expert and question id)."""

    def __init__(self, answers: dict[str, dict[str, str]]) -> None:
        self.answers = answers
        self.made: dict[str, FakeEngine] = {}

    def __call__(self, spec: ExpertSpec, cpus=None) -> FakeEngine:
        def answer(spec: ExpertSpec, request) -> str:
            if "Answer 1:" in request.text:  # the aggregator's prompt
                return "Having read them, the answer is (B)."
            return f"I think it over. The answer is ({self.answers[spec.name][request.question_id]})."

        return self.made.setdefault(spec.name, FakeEngine(spec, answer=answer))


@pytest.fixture
def pool_settings(tmp_path):
    """The default pool with a third model as a dedicated aggregator."""
    folder = tmp_path / "pool"
    folder.mkdir()
    text = (PROJECT_ROOT / "pools" / "default" / "pool.toml").read_text(encoding="utf-8")
    text = text.replace('aggregator = "smollm2"', 'aggregator = "writer"', 1)
    text += '\n[[models]]\nname = "writer"\nmemory_mb = 500\n[models.source]\nkind = "vllm"\nmodel = "packaged:x"\n'
    (folder / "pool.toml").write_text(text, encoding="utf-8")
    return lambda **more: load_settings(pool=folder, runs_dir=tmp_path / "runs", policy="all", **more)


QUESTIONS = [
    Question(id=f"q{i}", benchmark="free", text=f"Pick one, number {i}.", options=("x", "y", "z"), answer="A")
    for i in range(4)
]
AGREE = {
    "smollm2": {"q0": "A", "q1": "A", "q2": "C", "q3": "C"},
    "gemma3": {"q0": "A", "q1": "B", "q2": "C", "q3": "A"},
}


def test_agreeing_experts_skip_the_aggregator_and_disagreeing_ones_do_not(pool_settings):
    engines = Engines(AGREE)
    answers = {a.question_id: a for a in Orchestrator(pool_settings(), engine_factory=engines).answer_batch(QUESTIONS)}
    for qid in ("q0", "q2"):  # both experts said the same
        aggregation = answers[qid].trace.aggregation
        assert aggregation.method == "consensus" and aggregation.skipped.startswith("unanimous: 2 of 2 experts")
        assert answers[qid].choice == AGREE["gemma3"][qid] and aggregation.tokens_out == 0
    for qid in ("q1", "q3"):  # they disagreed: the aggregator wrote the answer
        aggregation = answers[qid].trace.aggregation
        assert aggregation.method == "synthesis:writer" and aggregation.skipped is None
        assert answers[qid].choice == "B"
    writer = [r for batch in engines.made["writer"].batches for r in batch]
    assert sorted(r.split("/")[0] for r in writer) == ["q1", "q3"]  # only the disagreements were asked


def test_when_every_question_agrees_the_aggregator_is_never_loaded(pool_settings):
    same = {"smollm2": dict.fromkeys(("q0", "q1"), "C"), "gemma3": dict.fromkeys(("q0", "q1"), "C")}
    engines = Engines(same)
    answers = Orchestrator(pool_settings(), engine_factory=engines).answer_batch(QUESTIONS[:2])
    assert all(a.trace.aggregation.method == "consensus" for a in answers)
    assert "writer" not in engines.made  # not even made, so never loaded


def test_no_skip_always_calls_the_aggregator(pool_settings):
    engines = Engines(AGREE)
    coe = Orchestrator(pool_settings(aggregator_skip=False), engine_factory=engines)
    answers = coe.answer_batch(QUESTIONS)
    assert all(a.trace.aggregation.method == "synthesis:writer" for a in answers)
    again = Orchestrator(pool_settings(), engine_factory=Engines(AGREE)).answer_batch(QUESTIONS, skip_consensus=False)
    assert all(a.trace.aggregation.skipped is None for a in again)
