"""The project's measures, each implemented once: the majority vote and its tie rule, the
Wilson interval, the seeded split and sample; the routing benchmark's figure uses that vote;
the SDK hands out the task graph ``answer_batch`` would run."""

from __future__ import annotations

import pytest

from aggregators import ExpertAnswer, majority, wilson_interval
from common.errors import BadInput
from eval import Question, sample, seeded_order, split

# (votes as expert=choice, competence or None, winner, why)
TIE_CASES = [
    ({"a": "B", "b": "B", "c": "A"}, None, "B", "most votes wins, no tie"),
    ({"a": "A", "b": "B"}, {"a": 0.3, "b": 0.7}, "B", "1-1: more competent supporter"),
    ({"a": "A", "b": "B"}, {"a": 0.8, "b": 0.7}, "A", "1-1: more competent supporter"),
    (
        {"a": "A", "d": "A", "b": "B", "c": "B"},
        {"a": 0.9, "d": 0.1, "b": 0.6, "c": 0.6},
        "B",
        "2-2: larger summed competence, not the single most competent expert",
    ),
    ({"a": "D", "b": "C"}, None, "C", "tie without competence: smaller choice string"),
    ({"a": "D", "b": "C"}, {"a": 0.5, "b": 0.5}, "C", "equal summed competence: smaller choice string"),
    ({"a": "C", "b": "D", "c": None}, {"a": 0.4}, "C", "expert without competence counts 0"),
    ({"a": "A", "b": "A", "c": "B"}, {"a": 0.1, "b": 0.1, "c": 0.99}, "A", "competence never beats a vote"),
    ({"a": None, "b": None}, None, None, "nothing readable: no choice"),
]


@pytest.mark.parametrize(("votes", "competence", "winner", "why"), TIE_CASES, ids=[c[3] for c in TIE_CASES])
def test_majority_tie_rule(votes, competence, winner, why):
    answers = [ExpertAnswer(expert=e, choice=c) for e, c in votes.items()]
    assert majority(answers, competence=competence).choice == winner
    assert majority(list(reversed(answers)), competence=competence).choice == winner  # order never matters


# 95% Wilson score intervals (z = 1.96): the two roots of (x/n - p)^2 = z^2 p (1 - p) / n, solved
# apart from the implementation (0/10 -> upper 0.2775 and 5/10 -> 0.2366-0.7634 are textbook values).
WILSON_CASES = [
    (0, 10, (0.0, 0.2775)),
    (5, 10, (0.2366, 0.7634)),
    (10, 10, (0.7225, 1.0)),
    (1, 20, (0.0089, 0.2361)),
    (81, 263, (0.2553, 0.3662)),
]


@pytest.mark.parametrize(("right", "n", "expected"), WILSON_CASES)
def test_wilson_interval_known_values(right, n, expected):
    low, high = wilson_interval(right, n)
    assert (low, high) == pytest.approx(expected, abs=5e-4)


def test_wilson_interval_of_nothing_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def items(ids):
    return [Question(id=str(i), benchmark="t", text=f"question {i}?", answer="A") for i in ids]


def test_split_is_deterministic_disjoint_and_complete():
    questions = items(range(100))
    train, test = split(questions, 0.3, seed=7)
    assert len(train) == 30 and len(test) == 70
    assert {q.id for q in train}.isdisjoint(q.id for q in test)
    assert {q.id for q in train} | {q.id for q in test} == {q.id for q in questions}
    again, _ = split(questions, 0.3, seed=7)
    assert [q.id for q in again] == [q.id for q in train]
    other, _ = split(questions, 0.3, seed=8)
    assert {q.id for q in other} != {q.id for q in train}


def test_split_and_sample_ignore_input_order():
    questions = items(range(50))
    shuffled = list(reversed(questions[25:])) + questions[:25]
    assert [q.id for q in split(questions, 0.5, 3)[0]] == [q.id for q in split(shuffled, 0.5, 3)[0]]
    assert [q.id for q in sample(questions, 10, 3)] == [q.id for q in sample(shuffled, 10, 3)]


def test_sample_is_the_head_of_the_seeded_order_and_of_the_split():
    questions = items(range(40))
    drawn = sample(questions, 10, seed=1)
    assert drawn == seeded_order(questions, 1)[:10]
    assert drawn == split(questions, 0.25, seed=1)[0]
    assert sample(questions, None, 1) == questions and sample(questions, 99, 1) == questions
    assert sample(questions, 0, 1) == []


def test_numeric_ids_sort_numerically_before_the_shuffle():
    # "10" after "9": the order does not depend on how ids are spelled as strings
    assert seeded_order(items([10, 9, 1]), 0) == seeded_order(items([1, 9, 10]), 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: split(q, 1.5, 0), "fraction must be in"),
        (lambda q: sample(q, -1, 0), "sample size"),
        (lambda q: split(q + q[:1], 0.5, 0), "repeated: '0'"),
        (lambda q: sample(q + q[:1], None, 0), "repeated: '0'"),
    ],
)
def test_split_and_sample_errors(call, message):
    with pytest.raises(BadInput, match=message):
        call(items(range(5)))


def test_routing_benchmark_votes_with_aggregators_majority():
    from _replay import Ballot

    from benchmarks import routing
    from common.answers import AnswerKind, Judge
    from router import ExpertChoice, RouteDecision

    # a 2-2 tie: the old benchmark gave it to the single most competent expert ("a": A);
    # aggregators.majority gives it to the larger summed competence (B)
    competence = {"a": 0.9, "d": 0.1, "b": 0.6, "c": 0.6}
    said = {"q1": {"a": "A", "d": "A", "b": "B", "c": "B"}, "q2": {"a": "C", "d": "A", "b": "C", "c": "D"}}
    questions = [
        Question(id="q1", benchmark="t", text="one?", answer="B", category="x"),
        Question(id="q2", benchmark="t", text="two?", answer="C", category="y"),
    ]
    judge = Judge(AnswerKind.LETTER)
    book = {
        q.id: Ballot(
            judge,
            q.answer,
            {e: ExpertAnswer(expert=e, choice=c, competence=competence[e]) for e, c in said[q.id].items()},
        )
        for q in questions
    }
    decisions = [
        RouteDecision(
            question_id=q.id,
            skills={},
            confidence=0.0,
            policy="all",
            experts=tuple(ExpertChoice(expert=e, score=0.0) for e in "adbc"),
        )
        for q in questions
    ]
    for q in questions:
        votes = list(book[q.id].votes.values())
        assert book[q.id].majority(list("adbc")).choice == majority(votes, judge=judge).choice
    result = routing.score(decisions, questions, book)
    assert result.accuracy == 1.0 and result.per_category == {"x": 1.0, "y": 1.0}
    assert result.ci95 == tuple(round(v, 4) for v in wilson_interval(2, 2))
    assert result.experts_per_question == 4.0
    only_a = [d.model_copy(update={"experts": d.experts[:1]}) for d in decisions]
    assert routing.score(only_a, questions, book).accuracy == 0.5


def test_sdk_tasks_are_the_graph_answer_batch_runs(tmp_path):
    from orchestrator import Orchestrator, load_settings
    from orchestrator.settings import PROJECT_ROOT

    settings = load_settings(pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=8000)
    coe = Orchestrator(settings)
    questions = [
        Question(id=f"q{i}", benchmark="free", text=f"Question {i}?", options=("yes", "no"), answer="A")
        for i in range(3)
    ]
    tasks, jobs = coe.tasks(questions, policy="all")
    finals = [t for t in tasks if t.after]
    assert [t.id for t in finals] == [f"q{i}/aggregate" for i in range(3)]
    assert set(jobs) == {t.id for t in finals}
    assert all(t.model == coe.pool.aggregator.name for t in finals)
    experts = {t.id for t in tasks if not t.after}
    assert experts == {f"q{i}/expert/{e}" for i in range(3) for e in coe.pool.expert_names}
    assert all(set(t.after) <= experts for t in finals)
    plan = coe.plan(questions, policy="all")
    assert sorted(task for phase in plan.phases for task in phase.tasks) == sorted(t.id for t in tasks)
