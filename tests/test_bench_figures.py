"""The replay benchmarks' shared figures come from one function: the majority of all experts
that benchmarks/routing.py ("all"), benchmarks/aggregation.py ("majority_all") and
benchmarks/cost_routing.py ("all_majority") report is ``_replay.Ballot.majority`` (the
project's ``aggregators.majority`` with the question's judge), judged right by that judge, and
equals what the pipeline itself answers. A second copy (another tie rule, no judge, answers
compared by ``==``) fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import _replay
import pytest
from _replay import Ballots, ballots, majority_all

from aggregators import majority
from eval import Question, get_benchmark
from router import ExpertChoice, RouteDecision
from skills import ProfileBuilder

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
EXPERTS = ("e1", "e2", "e3", "e4", "e5", "e6")
COMPETENCE = {"e1": 0.9, "e2": 0.8, "e3": 0.3, "e4": 0.3, "e5": 0.5, "e6": 0.4}
CITIES = ("Paris", "Lyon", "Nice", "Lille")

# (id, gold, each expert's answer in EXPERTS' order, is the all-six majority right, why)
CASES = [
    ("tie", "B", ("B", None, "A", "A", "B", "C"), True, "2-2: larger summed competence, not the smaller letter"),
    ("text", "A", ("Paris", "(a)", "B", "B", "C", None), True, "option text and '(a)' are A to the judge"),
    ("range", "B", ("H", "H", "H", "B", "B", "A"), True, "H is no option of four: it abstains"),
    ("blank", "A", (None,) * 6, False, "nothing readable: no answer"),
    ("wrong", "A", ("C", "C", "C", "A", "A", "D"), False, "the majority is wrong"),
]
EXPECTED = [case[3] for case in CASES]


def profile():
    """Experts right on COMPETENCE of 1,000 answers on skill "s"."""
    builder = ProfileBuilder(list(EXPERTS))
    for expert, accuracy in COMPETENCE.items():
        for i in range(1000):
            builder.add(expert, ["s"], i < round(accuracy * 1000))
    return builder.build()


@pytest.fixture(scope="module")
def fixture() -> tuple[list[Question], Ballots]:
    questions = [
        Question(id=qid, benchmark="mmlu_pro", text=f"{qid}?", options=CITIES, answer=gold, category=qid)
        for qid, gold, *_ in CASES
    ]
    choices = {qid: dict(zip(EXPERTS, said, strict=True)) for qid, _, said, *_ in CASES}
    book = ballots(get_benchmark("mmlu_pro"), questions, choices, profile(), [{"s": 1.0}] * len(questions))
    return questions, book


def all_decisions(questions, experts=EXPERTS):
    return [
        RouteDecision(
            question_id=q.id,
            skills={"s": 1.0},
            confidence=0.0,
            policy="all",
            experts=tuple(ExpertChoice(expert=e, score=0.0) for e in reversed(experts)),  # order never matters
        )
        for q in questions
    ]


def test_the_ballots_carry_the_judge_and_the_profiles_competence(fixture):
    questions, book = fixture
    for question in questions:
        ballot = book[question.id]
        assert ballot.judge == get_benchmark("mmlu_pro").judge(question) and ballot.gold == question.answer
        assert {e: a.competence for e, a in ballot.votes.items()} == pytest.approx(COMPETENCE, abs=0.01)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_the_all_experts_majority_is_aggregators_majority_with_the_judge(fixture, index):
    questions, book = fixture
    question = questions[index]
    ballot = book[question.id]
    bench = get_benchmark("mmlu_pro")
    direct = majority(list(ballot.votes.values()), judge=bench.judge(question))
    assert ballot.majority().choice == direct.choice
    assert ballot.majority_right() is bench.check(question, direct.choice) is EXPECTED[index], CASES[index][4]


def test_routing_aggregation_and_cost_routing_report_one_figure(fixture):
    from benchmarks import aggregation, cost_routing, routing

    questions, book = fixture
    ids = [q.id for q in questions]
    assert majority_all(book, ids) == EXPECTED
    hits, _, _ = aggregation.evaluate(questions, book, "e1", {"all_routed": [list(EXPERTS)] * len(questions)})
    assert hits["majority_all"] == hits["majority_all_routed"] == EXPECTED
    scored = routing.score(all_decisions(questions), questions, book)
    assert scored.accuracy == round(sum(EXPECTED) / len(EXPECTED), 4)
    assert scored.per_category == {q.id: float(right) for q, right in zip(questions, EXPECTED)}
    assert cost_routing.majority_all is majority_all  # its all_majority is this function's mean


def test_every_figure_goes_through_the_shared_vote(fixture, monkeypatch):
    """routing's and aggregation's votes are Ballot's: count the calls of the vote underneath."""
    from benchmarks import aggregation, routing

    questions, book = fixture
    calls: list[int] = []

    def counted(answers, **options):
        calls.append(len(answers))
        return majority(answers, **options)

    monkeypatch.setattr(_replay, "majority", counted)
    routing.score(all_decisions(questions), questions, book)
    assert calls == [6] * len(questions)
    calls.clear()
    aggregation.evaluate(questions, book, "e1", {})
    assert calls == [6] * len(questions)  # majority_all


def test_no_benchmark_votes_or_judges_by_itself():
    """The replay benchmarks import no vote of their own, and no benchmark compares an answer
    with the gold one by ``==``: both go through the judge."""
    for name in ("routing.py", "aggregation.py", "cost_routing.py"):
        tree = ast.parse((BENCHMARKS / name).read_text())
        imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names}
        assert not imported & {"majority", "weighted", "score"}, name
    gold_eq = re.compile(r"[=!]=\s*(?:gold\b|\w+\.answer\b|gold\[)|(?:\.answer|gold\[[^]]*\])\s*[=!]=")
    for path in sorted(BENCHMARKS.glob("*.py")):
        text = path.read_text()
        assert not gold_eq.search(text), (
            f"{path.name} compares an answer with the gold one by ==: {gold_eq.search(text)}"
        )
        flag = re.search(r"\.correct\b(?!\()", text)
        assert not flag, f"{path.name} reads a recording's correct flag: {flag}"


@pytest.mark.data
def test_the_benchmarks_vote_is_the_pipelines_on_the_recordings(data_dir, replay_file, tmp_path):
    """On real recordings: the SDK's majority answer of all six (what ``coe eval`` scores) is the
    ballot's, and every benchmark's all-six figure is the SDK's accuracy."""
    from benchmarks import aggregation, routing
    from eval import partition
    from orchestrator import Orchestrator, load_pool, load_settings

    settings = load_settings(data_dir=data_dir, runs_dir=tmp_path / "runs")
    bench = get_benchmark("mmlu_pro")
    _, evaluation = partition(bench.questions(data_dir))
    questions = evaluation[:150]
    coe = Orchestrator(settings, pool=load_pool(_replay.POOL_DIR, data_dir))
    answers = coe.answer_batch(questions, benchmark=bench, policy="all", aggregation="majority")
    by_id = {q.id: q for q in questions}
    book: Ballots = {
        a.question_id: _replay.Ballot(
            bench.judge(by_id[a.question_id]), by_id[a.question_id].answer, {e.expert: e for e in a.trace.experts}
        )
        for a in answers
    }
    assert len(book) == len(questions)
    for answer in answers:
        ballot = book[answer.question_id]
        assert ballot.majority().choice == answer.choice
        assert ballot.majority_right() == bench.check(by_id[answer.question_id], answer.choice)
    sdk = [bench.check(by_id[a.question_id], a.choice) for a in answers]
    ids = [a.question_id for a in answers]
    ordered = [by_id[i] for i in ids]
    assert majority_all(book, ids) == sdk
    hits, _, _ = aggregation.evaluate(ordered, book, coe.pool.expert_names[0], {})
    assert hits["majority_all"] == sdk
    assert routing.score(all_decisions(ordered, coe.pool.expert_names), ordered, book).accuracy == round(
        sum(sdk) / len(sdk), 4
    )
    assert sum(sdk) > 0.3 * len(sdk)  # the recordings were read (six 7B models score about 0.47)
