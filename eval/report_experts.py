"""The experts of an evaluation run and its reference expert, from ``results.jsonl``'s expert rows alone.

Each expert's accuracy over the answers it gave (questions × samples where some method asked
it; a failed call is no answer), with its Wilson interval, and its mean cost per answer where
the pool declares costs. The reference (``RunInfo.cost_reference``: ``coe eval --reference``,
else the pool's costliest expert) is what a method's accuracy ratio is against: its accuracy
over the reference's on the answers both gave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregators import wilson_interval
from eval.results import ExpertResult, QuestionResult, RunInfo, declares_costs


class ExpertSummary(BaseModel):
    """One expert over the answers it gave in the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    answered: int = Field(..., description="Answers it gave (questions × samples), failed calls not counted.")
    failed: int = Field(0, description="Calls that failed (an error instead of an answer).")
    correct: int
    n: int = Field(..., description="Answers scored: those it gave to questions with a gold answer.")
    accuracy: float
    ci95: tuple[float, float] = Field(..., description="Wilson score interval of the accuracy.")
    cost_per_answer: float | None = Field(
        None, description="Mean cost of one answer in the run's cost unit (None: the pool declares no costs)."
    )


def summarise_experts(info: RunInfo, results: Sequence[QuestionResult]) -> list[ExpertSummary]:
    """Every expert with a row in the results (sorted by name), over the answers it gave."""
    rows: dict[str, list[ExpertResult]] = defaultdict(list)
    for result in results:
        for row in result.experts:
            rows[row.expert].append(row)
    costed = declares_costs(info.cost_unit)
    return [_summarise_expert(name, rows[name], costed) for name in sorted(rows)]


def _summarise_expert(name: str, rows: Sequence[ExpertResult], costed: bool) -> ExpertSummary:
    answered = [row for row in rows if row.error is None]
    scored = [row.correct for row in answered if row.correct is not None]  # None: no gold answer
    right = sum(scored)
    return ExpertSummary(
        name=name,
        answered=len(answered),
        failed=len(rows) - len(answered),
        correct=right,
        n=len(scored),
        accuracy=right / len(scored) if scored else 0.0,
        ci95=wilson_interval(right, len(scored)),
        cost_per_answer=sum(row.cost for row in answered) / len(answered) if costed and answered else None,
    )


Choice = Literal["costliest", "given"]


def reference_choice(info: RunInfo) -> Choice | None:
    """How the run's reference was chosen: ``costliest`` (the pool's costliest expert, the first
    of equals: the default) or ``given`` (named with ``--reference``); None: there is none."""
    if info.cost_reference is None:
        return None
    costs = info.costs
    if declares_costs(info.cost_unit) and costs and info.cost_reference == max(costs, key=costs.__getitem__):
        return "costliest"
    return "given"


Answer = tuple[str, int]
"""An answer of the run: (question id, sample)."""


def reference_hits(results: Sequence[QuestionResult], reference: str | None) -> dict[Answer, bool]:
    """Whether the reference was right, for each scored answer it gave (none without a reference)."""
    if reference is None:
        return {}
    return {
        (result.question_id, result.sample): row.correct
        for result in results
        for row in result.experts
        if row.expert == reference and row.error is None and row.correct is not None
    }


def accuracy_ratio(hits: Iterable[tuple[Answer, bool]], reference: dict[Answer, bool]) -> float | None:
    """A method's accuracy over the reference's, on the answers both gave (``hits``: the method's
    scored answers); None when the reference gave none of them or none of those was right."""
    paired = [(hit, reference[answer]) for answer, hit in hits if answer in reference]
    right = sum(ref for _, ref in paired)
    return sum(hit for hit, _ in paired) / right if right else None
