"""build_answers shares what a batch's records have in common (each generation read once, each
vote counted once for the records with the very same voters' answers) and gives the answers
each record would get alone."""

from __future__ import annotations

from dataclasses import replace

from batching.results import RunMetrics, RunResult
from common.requests import Generation
from eval import load_benchmark
from eval.benchmarks import Question
from orchestrator.pipeline.answering import build_answer, build_answers
from orchestrator.pipeline.asked import Asked, prompting
from orchestrator.pipeline.task_ids import expert_task_id
from router import ExpertChoice, RouteDecision

BENCH = load_benchmark("mmlu_pro")
QUESTION = Question(
    id="q1",
    text="Which one?",
    options=("first", "second", "third", "fourth"),
    benchmark="mmlu_pro",
    answer="A",
    category="law",
)
STATED = {"e1": "A", "e2": "B", "e3": "A", "e4": None}
"""Each expert's recorded answer (e4's recording has none: its text is read)."""
TEXTS = {"e1": "A", "e2": "B", "e3": "A", "e4": "Reasoning... The answer is (B)."}


def decision(scores: dict[str, float], policy: str = "all") -> RouteDecision:
    return RouteDecision(
        question_id=QUESTION.id,
        skills={"law": 1.0},
        experts=tuple(ExpertChoice(expert=e, score=s) for e, s in scores.items()),
        confidence=1.0,
        policy=policy,
    )


def result(missing: tuple[str, ...] = ()) -> RunResult:
    generations = {
        expert_task_id(QUESTION.id, e): Generation(
            request_id=f"r-{e}", model=e, text=TEXTS[e], answer=STATED[e], tokens_in=10, tokens_out=5, seconds=0.5
        )
        for e in STATED
        if e not in missing
    }
    return RunResult(
        run_id="run",
        generations=generations,
        failed={},
        cached={t for t in generations if t.endswith("e3")},
        metrics=RunMetrics(),
    )


def records() -> list[Asked]:
    """An evaluation's methods on one question: three that chose the same experts (one
    decision), one that scored them otherwise, one single expert, a weighted vote, and one
    whose expert did not run."""
    prompted = prompting(QUESTION, BENCH)
    competence = {"e1": 0.7, "e2": 0.6, "e3": 0.4, "e4": 0.5}
    every = decision({"e1": 0.7, "e2": 0.6, "e3": 0.4, "e4": 0.5})
    symbolic = decision({"e2": 0.3, "e1": 0.2, "e4": 0.1}, "symbolic")
    single = decision({"e2": 0.6}, "single-best")

    def asked(d: RouteDecision, method: str, vote: str = "majority") -> Asked:
        mine = {e: competence[e] for e in d.expert_names}
        return Asked(QUESTION, d, prompted, "agg", mine, vote=vote, method=method)  # type: ignore[arg-type]

    ours = asked(every, "ours")
    return [
        ours,  # the methods that chose the same experts are one record but for the method (as evaluate makes them)
        replace(ours, method="all-majority"),
        replace(ours, method="oracle"),
        asked(symbolic, "symbolic"),
        asked(single, "single-best"),
        replace(ours, method="weighted", vote="weighted"),
    ]


def comparable(answer):
    """The answer without its times (a shared vote keeps the seconds of its first count)."""
    dumped = answer.model_dump()
    dumped["trace"]["timings"].pop("aggregate")
    if dumped["trace"]["aggregation"] is not None:
        dumped["trace"]["aggregation"].pop("seconds")
    return dumped


def test_shared_answers_equal_each_records_own():
    for missing in ((), ("e4",), ("e1", "e2", "e3", "e4")):
        run = result(missing)
        asked = records()
        together = build_answers(asked, run, pool="p", route_seconds=0.1)
        alone = [build_answer(one, run, pool="p", route_seconds=0.1) for one in asked]
        assert [comparable(a) for a in together] == [comparable(a) for a in alone], missing


def test_records_that_differ_only_in_their_method_share_one_answer_and_each_reads_its_own_numbers():
    ours, all_majority, oracle, symbolic, single, weighted = build_answers(
        records(), result(), pool="p", route_seconds=0.1
    )
    assert ours is all_majority is oracle  # one decision, one vote: one answer
    assert symbolic.trace.aggregation is not ours.trace.aggregation
    assert ours.choice == "A"  # e1 and e3 against e2 and e4
    assert weighted.trace.aggregation is not ours.trace.aggregation
    assert weighted.trace.aggregation.method == "weighted"
    # the same generation, read once; each record's answer carries its own router score
    e2_ours = next(e for e in ours.trace.experts if e.expert == "e2")
    e2_symbolic = next(e for e in symbolic.trace.experts if e.expert == "e2")
    assert e2_ours.text == e2_symbolic.text and e2_ours.choice == e2_symbolic.choice == "B"
    assert (e2_ours.score, e2_symbolic.score) == (0.6, 0.3)
    assert e2_ours.competence == e2_symbolic.competence == 0.6
    assert single.choice == "B" and single.trace.aggregation.agreed_with == ("e2",)
    e4 = next(e for e in ours.trace.experts if e.expert == "e4")
    assert e4.choice == "B"  # read from its text
    assert ours.trace.cache_hits == 1 and symbolic.trace.cache_hits == 0


def test_votes_of_the_same_generations_and_competences_are_counted_once_whatever_the_router_scores():
    prompted = prompting(QUESTION, BENCH)
    single = decision({"e2": 0.6}, "single-best")
    category = decision({"e2": 0.9}, "category")  # the same expert, another score
    records = [
        Asked(QUESTION, single, prompted, "agg", {"e2": 0.6}, vote="majority", method="single-best"),
        Asked(QUESTION, category, prompted, "agg", {"e2": 0.6}, vote="majority", method="category"),
        Asked(QUESTION, category, prompted, "agg", {"e2": 0.2}, vote="majority", method="other competence"),
    ]
    best, by_category, other = build_answers(records, result(), pool="p", route_seconds=0.1)
    assert best.trace.aggregation is by_category.trace.aggregation  # one count
    assert other.trace.aggregation is not best.trace.aggregation  # another competence: counted again
    assert [e.score for e in best.trace.experts] == [0.6] and [e.score for e in by_category.trace.experts] == [0.9]
    alone = [build_answer(one, result(), pool="p", route_seconds=0.1) for one in records]
    assert [comparable(a) for a in (best, by_category, other)] == [comparable(a) for a in alone]
