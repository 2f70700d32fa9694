"""When the aggregator may be skipped, and fitting that rule on answered questions.

The rule has two thresholds. ``level``: the share of the usable expert answers that agree (by the
question's judge; two at least); ``bar``: the mean competence (the profile's accuracy on the
question's skill) of the experts who agree. When both are met the agreed answer stands and the
aggregator is not called; with no bar, agreement alone decides (the unanimous default is level 1).
An agreement whose experts have no known competence never clears a bar.

``fit_skip`` chooses the two on calibration questions whose every answer is known: each expert's
and the aggregator's when it was always called. Played on them, a setting's accuracy takes the
agreed answer where it skips and the aggregator's elsewhere; the setting chosen saves the most
calls while its accuracy stays within ``tolerance`` of always aggregating (ties: the more
accurate, then the stricter). ``SkipCalibration`` is what a pool stores
(``orchestrator.pools.artefacts``, versioned, activated as the other artefacts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aggregators.result import ExpertAnswer
from aggregators.vote import majority
from common.answers import Judge
from common.errors import BadInput

FORMAT_VERSION = 1
LEVELS = (0.51, 0.6, 0.66, 0.75, 0.8, 0.9, 1.0)
"""Agreement levels tried (above one half: a majority at least; shares of k answers fall between)."""
BARS: tuple[float | None, ...] = (None, *(round(0.05 * i, 2) for i in range(20)))
"""Competence bars tried (None: none)."""
_EPS = 1e-9


class Agreement(NamedTuple):
    """The experts' largest agreement on one question."""

    choice: str
    share: float
    """Its supporters over every usable answer."""
    supporters: tuple[int, ...]
    """Indices of the agreeing answers."""
    competence: float | None
    """The supporters' mean competence where known; None when none is known."""


def agreement_of(answers: Sequence[ExpertAnswer], judge: Judge | None) -> Agreement | None:
    """The largest agreement among ``answers`` (the majority vote's choice), or None when fewer
    than two answers agree on anything."""
    if len(answers) < 2:
        return None
    result = majority(answers, judge=judge)
    if result.choice is None or len(result.agreed_with) < 2:
        return None
    supporters = tuple(i for i, a in enumerate(answers) if a.expert in result.agreed_with)
    known = [c for i in supporters if (c := answers[i].competence) is not None]
    return Agreement(result.choice, result.confidence, supporters, sum(known) / len(known) if known else None)


def skips(found: Agreement | None, level: float | None, bar: float | None) -> bool:
    """Whether the rule (``level``, ``bar``) skips the aggregator for this agreement."""
    if found is None or level is None or found.share < level - _EPS:
        return False
    return bar is None or (found.competence is not None and found.competence >= bar - _EPS)


class SkipCase(NamedTuple):
    """One calibration question: its agreement, and whether each way's answer is right."""

    agreement: Agreement | None
    agreed_right: bool
    """The agreed answer is right (what a skip answers)."""
    aggregated_right: bool
    """The aggregator's answer is right (what always aggregating answers)."""


class SkipPoint(BaseModel):
    """One setting played on the calibration questions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: float | None = Field(..., description="Agreement level; None: never skip.")
    bar: float | None = Field(..., description="Competence bar; None: none.")
    accuracy: float
    calls_saved: float = Field(..., description="Share of the questions whose aggregator call is skipped.")


class SkipCalibration(BaseModel):
    """The aggregator's fitted skip rule, what it was fitted to, and what it reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    level: float | None = Field(..., gt=0.5, le=1.0, description="Agreement level; None: never skip.")
    bar: float | None = Field(..., ge=0.0, le=1.0, description="Competence bar; None: agreement alone decides.")
    tolerance: float = Field(..., ge=0.0, le=1.0, description="Accuracy it may lose against always aggregating.")
    accuracy_always: float
    achieved: SkipPoint
    curve: list[SkipPoint]
    questions: int = Field(..., ge=1)
    revision: int = Field(0, ge=0, description="The version it is stored as (0 before storing).")

    @model_validator(mode="after")
    def _known(self) -> SkipCalibration:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format {self.format_version} is not known (this version reads {FORMAT_VERSION})")
        return self


def play(cases: Sequence[SkipCase], level: float | None, bar: float | None) -> SkipPoint:
    """The accuracy and calls saved of the rule (``level``, ``bar``) on ``cases``."""
    right = saved = 0
    for case in cases:
        skipped = skips(case.agreement, level, bar)
        saved += skipped
        right += case.agreed_right if skipped else case.aggregated_right
    n = len(cases)
    return SkipPoint(level=level, bar=bar, accuracy=round(right / n, 4), calls_saved=round(saved / n, 4))


def fit_skip(cases: Sequence[SkipCase], tolerance: float = 0.001) -> SkipCalibration:
    """The rule that saves the most aggregator calls on ``cases`` while its accuracy stays within
    ``tolerance`` (a share: 0.001 is 0.1 points) of always aggregating; never skipping when none does."""
    if not cases:
        raise BadInput("no calibration questions to fit the skip rule on")
    if not 0.0 <= tolerance <= 1.0:
        raise BadInput(f"tolerance must lie in [0, 1], got {tolerance}")
    always = sum(c.aggregated_right for c in cases) / len(cases)
    curve = [play(cases, level, bar) for level in LEVELS for bar in BARS]
    allowed = [p for p in curve if p.calls_saved > 0 and p.accuracy >= always - tolerance - _EPS]
    never = SkipPoint(level=None, bar=None, accuracy=round(always, 4), calls_saved=0.0)
    best = max(
        allowed,
        key=lambda p: (p.calls_saved, p.accuracy, p.level or 0.0, -1.0 if p.bar is None else p.bar),
        default=never,
    )
    return SkipCalibration(
        level=best.level,
        bar=best.bar,
        tolerance=tolerance,
        accuracy_always=round(always, 4),
        achieved=best,
        curve=curve,
        questions=len(cases),
    )
