"""Choosing the aggregator: synthetic cases from a tiny replay file, scoring fake candidates.
(Storing the choice in a pool is tested with the pool's artefacts, tests/test_artefacts.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aggregators import (
    ValidationItem,
    records_for,
    select_aggregator,
    synthetic_cases,
)
from batching import ExpertSpec, FakeEngine
from common.errors import BadInput
from common.recordings import ReplayBook
from common.requests import Generation, Request
from common.tasks import Task
from eval.extract import letter_extractor

FORMAT = 'End with "The answer is (X)".'
EXPERTS = {"e1": "M1", "e2": "M2", "e3": "M3", "e4": "M4"}
GOLD = {f"q{i}": "ABCD"[i % 4] for i in range(12)}
SKILL = {qid: ("math" if int(qid[1:]) < 6 else "law") for qid in GOLD}


def wrong_letter(gold: str, offset: int) -> str:
    return "ABCD"[("ABCD".index(gold) + offset) % 4]


@pytest.fixture
def replay(tmp_path: Path) -> Path:
    """Four recorded experts; a correct answer says 'I checked'; q11 has only one wrong answer."""
    lines = []
    for qid, gold in GOLD.items():
        for number, model in enumerate(EXPERTS.values()):
            right = (number + int(qid[1:])) % 4 == 0  # exactly one expert right per question
            if qid == "q11" and number >= 2:
                continue  # leaves q11 with one right and at most one wrong: skipped
            pred = gold if right else wrong_letter(gold, number % 3 + 1)
            text = f"{'I checked twice' if right else 'Guessing'}. The answer is ({pred})."
            row = {"model": model, "question_id": qid, "text": text, "pred": pred, "correct": int(right)}
            lines.append(json.dumps(row))
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def items() -> list[ValidationItem]:
    return [
        ValidationItem(qid, f"Question {qid}? (A) a (B) b (C) c (D) d", gold, SKILL[qid], FORMAT, letter_extractor(4))
        for qid, gold in GOLD.items()
    ]


def careful(spec: ExpertSpec, request: Request) -> str:
    """Picks the answer whose text says it was checked: right whenever that answer is shown."""
    block = re.search(r"I checked twice\. The answer is \(([A-D])\)", request.text)
    return f"Going with the checked one. The answer is ({block.group(1) if block else 'A'})."


def first(spec: ExpertSpec, request: Request) -> str:
    """Copies Answer 1: right only when the shuffle put the correct answer first."""
    block = re.search(r"Answer 1:\n.*?The answer is \(([A-D])\)", request.text, re.DOTALL)
    return f"The answer is ({block.group(1)})."


def fake_run(behaviour: dict, failing: set[str] = frozenset()):
    engines = {
        name: FakeEngine(
            ExpertSpec(name=name, source={"kind": "vllm", "model": name}),
            answer=fn,
        )
        for name, fn in behaviour.items()
    }
    calls: list[list[str]] = []

    def run(tasks: list[Task]) -> dict[str, Generation]:
        calls.append([t.id for t in tasks])
        out = {}
        for name, engine in engines.items():
            engine.load()
            mine = [t for t in tasks if t.model == name and t.id not in failing]
            for task, generation in zip(mine, engine.generate([t.request for t in mine]), strict=True):
                out[task.id] = generation
            engine.unload()
        return out

    return run, calls


def test_cases_have_one_correct_two_wrong_from_distinct_experts(replay: Path):
    records = records_for(ReplayBook(replay), EXPERTS)
    cases = synthetic_cases(items(), records, seed=1)
    assert {c.item.question_id for c in cases} == set(GOLD) - {"q11"}
    firsts = set()
    for case in cases:
        experts = [a.expert for a in case.answers]
        assert len(experts) == 3 == len(set(experts))
        assert sum(a.choice == case.item.gold for a in case.answers) == 1
        assert next(a for a in case.answers if a.choice == case.item.gold).expert == case.correct_expert
        firsts.add(case.answers[0].expert == case.correct_expert)
    assert firsts == {True, False}  # shuffled: the correct one is not always first
    again = synthetic_cases(items(), records, seed=1)
    assert [c.answers for c in again] == [c.answers for c in cases]
    with pytest.raises(BadInput):
        synthetic_cases(items(), records, n_wrong=0)


def test_selection_scores_candidates_and_picks_the_best(replay: Path):
    records = records_for(ReplayBook(replay), EXPERTS)
    run, calls = fake_run({"careful": careful, "first": first})
    choice = select_aggregator(["careful", "first"], items(), records, run, seed=1)
    assert len(calls) == 1 and len(calls[0]) == 2 * 11
    good, naive = choice.candidates["careful"], choice.candidates["first"]
    assert good.accuracy == 1.0 and good.n == 11 and good.correct == 11
    assert good.ci95[0] > 0.7 and good.ci95[1] == 1.0
    assert 0.0 < naive.accuracy < 1.0  # right exactly when the shuffle put the correct answer first
    assert choice.best == "careful"
    assert set(choice.best_per_skill) == {"math", "law"}
    assert good.per_skill["math"].n + good.per_skill["law"].n == 11
    assert choice.for_skill("law") == "careful" and choice.for_skill("unknown") == "careful"


def test_failed_generations_count_as_wrong(replay: Path):
    records = records_for(ReplayBook(replay), EXPERTS)
    run, _ = fake_run({"careful": careful}, failing={"aggsel/careful/q0", "aggsel/careful/q1"})
    choice = select_aggregator(["careful"], items(), records, run)
    assert choice.candidates["careful"].failed == 2
    assert choice.candidates["careful"].correct == 9


def test_selection_input_errors(replay: Path):
    records = records_for(ReplayBook(replay), EXPERTS)
    run, _ = fake_run({"careful": careful})
    with pytest.raises(BadInput, match="at least one candidate"):
        select_aggregator([], items(), records, run)
    with pytest.raises(BadInput, match="no validation question"):
        select_aggregator(["careful"], items(), records, run, n_wrong=4)


def test_a_skill_tie_goes_to_the_best_overall(replay: Path):
    records = records_for(ReplayBook(replay), EXPERTS)

    def never(spec: ExpertSpec, request: Request) -> str:
        return "No idea."

    def law_blind(spec: ExpertSpec, request: Request) -> str:
        # careful except on law questions (q6..q10), where it fails like "never"
        return "No idea." if re.search(r"Question q(6|7|8|9|10)\?", request.text) else careful(spec, request)

    run, _ = fake_run({"a-never": never, "z-law-blind": law_blind})
    choice = select_aggregator(["a-never", "z-law-blind"], items(), records, run)
    assert choice.candidates["z-law-blind"].per_skill["law"].accuracy == 0.0
    assert choice.candidates["a-never"].per_skill["law"].accuracy == 0.0
    assert choice.best == "z-law-blind"
    assert choice.best_per_skill == {"law": "z-law-blind", "math": "z-law-blind"}
