"""The experts of an evaluation run, from ``results.jsonl``'s expert rows alone.

Each expert's accuracy over the answers it gave (questions × samples where some method asked
it; a failed call is no answer), with its Wilson interval, and its mean cost per answer where
the pool declares costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

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
