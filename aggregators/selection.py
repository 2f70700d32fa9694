"""Choosing the aggregator on a synthetic aggregation task.

For each validation question, one correct and ``n_wrong`` incorrect recorded answers are
taken from different experts and shuffled; every candidate aggregator model is asked to
synthesise them, and scored by how often its extracted answer equals the gold one. The
result (per candidate accuracy with a 95% interval and n, the best overall and per skill) is an
``AggregatorChoice``; a pool stores it through ``orchestrator.artefacts.PoolArtefacts``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregators.result import ExpertAnswer, Extract, wilson_interval
from aggregators.synthesis import SynthesisOptions, synthesis_request
from common.answers import Judge
from common.errors import BadInput
from common.recordings import Record, ReplayBook
from common.requests import stated_answer
from common.tasks import RunTasks, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationItem:
    """A validation question as the selection needs it (the caller formats it for its benchmark)."""

    question_id: str
    question_text: str
    gold: str
    skill: str
    answer_format: str
    extract: Extract
    judge: Judge = field(default_factory=Judge)
    """Whether an answer is right (the question's judge; the caller's, for its benchmark)."""

    def right(self, answer: str | None) -> bool:
        return self.judge.correct(answer, self.gold)


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic aggregation: a question and its shuffled answers (exactly one correct)."""

    item: ValidationItem
    answers: tuple[ExpertAnswer, ...]
    correct_expert: str


def synthetic_cases(
    items: Sequence[ValidationItem],
    records: Mapping[str, Mapping[str, Record]],
    *,
    n_wrong: int = 2,
    seed: int = 0,
) -> list[SyntheticCase]:
    """Cases for the items that have a correct and ``n_wrong`` incorrect answers from distinct experts.

    ``records`` maps an expert name to its recorded answers by question id. Items without
    enough answers are skipped (logged). The draw and the shuffle are seeded per question.
    """
    if n_wrong < 1:
        raise BadInput(f"n_wrong must be at least 1, got {n_wrong}")
    cases = []
    skipped = 0
    for item in items:
        right: list[tuple[str, Record]] = []
        wrong: list[tuple[str, Record]] = []
        for expert in sorted(records):
            record = records[expert].get(item.question_id)
            if record is None or not record.text.strip():
                continue
            said = stated_answer(record.pred, record.text, item.extract)
            (right if item.right(said) else wrong).append((expert, record))
        if not right or len(wrong) < n_wrong:
            skipped += 1
            continue
        rng = random.Random(f"{seed}\x00{item.question_id}")
        chosen = [rng.choice(right), *rng.sample(wrong, n_wrong)]
        correct_expert = chosen[0][0]
        rng.shuffle(chosen)
        answers = tuple(
            ExpertAnswer(expert=expert, text=record.text, choice=stated_answer(record.pred, record.text, item.extract))
            for expert, record in chosen
        )
        cases.append(SyntheticCase(item, answers, correct_expert))
    log.info("aggregator selection: %d synthetic case(s), %d question(s) skipped", len(cases), skipped)
    return cases


def records_for(book: ReplayBook, experts: Mapping[str, str]) -> dict[str, dict[str, Record]]:
    """Recorded answers of each expert (name -> recorded model name) from a replay book."""
    return {name: book.records(model) for name, model in experts.items()}


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    correct: int = Field(..., ge=0)
    n: int = Field(..., ge=0)
    accuracy: float = Field(..., ge=0.0, le=1.0)
    ci95: tuple[float, float]

    @classmethod
    def of(cls, correct: int, n: int) -> Score:
        return cls(correct=correct, n=n, accuracy=correct / n if n else 0.0, ci95=wilson_interval(correct, n))


class CandidateScore(Score):
    failed: int = Field(0, ge=0, description="Generations that failed or never came (scored wrong).")
    per_skill: dict[str, Score] = Field(default_factory=dict)


class AggregatorChoice(BaseModel):
    """The outcome of an aggregator selection, as a pool stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(1, description="Schema version of this file.")
    revision: int = Field(1, ge=1, description="The version this selection was stored as in its pool.")
    created: str = Field(..., description="UTC time the selection finished (ISO 8601).")
    seed: int
    n_wrong: int = Field(..., ge=1)
    options: SynthesisOptions
    candidates: dict[str, CandidateScore] = Field(..., min_length=1)
    best: str
    best_per_skill: dict[str, str] = Field(default_factory=dict)

    def for_skill(self, skill: str | None) -> str:
        """The best aggregator for ``skill``, or the best overall when the skill was not measured."""
        return self.best_per_skill.get(skill, self.best) if skill is not None else self.best


def _best(scores: Mapping[str, Score], overall: Mapping[str, Score] | None = None) -> str:
    """Highest accuracy; ties go to the better one overall (if given), then more items, then name."""

    def rank(name: str) -> tuple:
        tie = -overall[name].accuracy if overall is not None else 0.0
        return (-scores[name].accuracy, tie, -scores[name].n, name)

    return min(scores, key=rank)


def select_aggregator(
    candidates: Sequence[str],
    items: Sequence[ValidationItem],
    records: Mapping[str, Mapping[str, Record]],
    run: RunTasks,
    *,
    options: SynthesisOptions | None = None,
    n_wrong: int = 2,
    seed: int = 0,
) -> AggregatorChoice:
    """Score each candidate aggregator on the synthetic task; the caller saves the result."""
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        raise BadInput("aggregator selection needs at least one candidate model")
    options = (options or SynthesisOptions()).model_copy(update={"order": "given"})
    cases = synthetic_cases(items, records, n_wrong=n_wrong, seed=seed)
    if not cases:
        raise BadInput(
            f"no validation question of {len(items)} has one correct and {n_wrong} incorrect recorded answers"
        )
    tasks: list[Task] = []
    for candidate in candidates:
        for case in cases:
            task_id = f"aggsel/{candidate}/{case.item.question_id}"
            request = synthesis_request(
                task_id,
                case.item.question_text,
                list(case.answers),
                case.item.answer_format,
                options,
                question_id=case.item.question_id,
            )
            tasks.append(Task(id=task_id, model=candidate, request=request))
    log.info("aggregator selection: %d candidate(s) x %d case(s)", len(candidates), len(cases))
    generations = run(tasks)
    scores: dict[str, CandidateScore] = {}
    for candidate in candidates:
        right = failed = 0
        by_skill: dict[str, list[int]] = {}
        for case in cases:
            generation = generations.get(f"aggsel/{candidate}/{case.item.question_id}")
            ok = generation is not None and generation.error is None
            hit = generation is not None and ok and case.item.right(case.item.extract(generation.text))
            failed += not ok
            right += hit
            tally = by_skill.setdefault(case.item.skill, [0, 0])
            tally[0] += hit
            tally[1] += 1
        base = Score.of(right, len(cases))
        scores[candidate] = CandidateScore(
            **base.model_dump(),
            failed=failed,
            per_skill={skill: Score.of(c, n) for skill, (c, n) in sorted(by_skill.items())},
        )
        log.info("aggregator selection: %s %.3f (n=%d, failed %d)", candidate, base.accuracy, base.n, failed)
    skills = sorted({case.item.skill for case in cases})
    return AggregatorChoice(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        seed=seed,
        n_wrong=n_wrong,
        options=options,
        candidates=scores,
        best=_best(scores),
        best_per_skill={s: _best({c: scores[c].per_skill[s] for c in candidates}, scores) for s in skills},
    )
