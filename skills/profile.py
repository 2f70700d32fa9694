"""Profiles: how often each expert was right, per skill, and overall.

Per (expert, skill) a ``Profile`` keeps counts (n, correct). From them:

- ``score``: the Symbolic-MoE local score, +1 per right answer and -1 per wrong one;
- ``accuracy``: a smoothed accuracy, the mean of a Beta posterior whose prior is centred on
  the expert's overall accuracy with ``prior_strength`` pseudo-answers; ``uncertainty`` is
  that posterior's standard deviation;
- ``competence``: the expert's overall accuracy (Beta(1, 1)-smoothed), the global prior. An
  expert with no evidence at all is given just less than the weakest measured expert, so it
  never outranks one (``measured`` says which experts have evidence).

Profiles are built from recorded answers (skills.build) or live generations, and stored
as versioned JSON (skills.store).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from common.errors import BadInput
from common.names import unknown_name
from skills.names import normalise_skill

FORMAT_VERSION = 1
UNMEASURED_MARGIN = 0.01
"""How far below the weakest measured expert an expert without evidence is placed."""


class SkillStats(BaseModel):
    """How many answers of one expert on one skill were scored, and how many were right."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(0, ge=0, description="Answers scored.")
    correct: int = Field(0, ge=0, description="Answers that were right.")

    @model_validator(mode="after")
    def _correct_at_most_n(self) -> SkillStats:
        if self.correct > self.n:
            raise ValueError(f"correct ({self.correct}) exceeds n ({self.n})")
        return self

    @property
    def score(self) -> int:
        """Symbolic-MoE local score: right answers minus wrong ones."""
        return 2 * self.correct - self.n


class Profile(BaseModel):
    """Expert x skill competence with counts, and each expert's overall competence."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    name: str = Field("profile", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    source: str = Field("", description="Where the answers came from (free text).")
    prior_strength: float = Field(
        4.0, ge=0.0, le=1000.0, description="Pseudo-answers of the Beta prior centred on overall accuracy."
    )
    experts: list[str] = Field(..., min_length=1)
    stats: dict[str, dict[str, SkillStats]] = Field(default_factory=dict, description="expert -> skill -> counts.")
    overall: dict[str, SkillStats] = Field(
        default_factory=dict, description="expert -> counts over all answered questions."
    )
    relabelled: int = Field(
        0, ge=0, description="Recorded answers whose own 'correct' field the judge overruled (replay profiles)."
    )
    _memo: dict[tuple[str, str | None], tuple[float, float]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _experts_consistent(self) -> Profile:
        if len(set(self.experts)) != len(self.experts):
            raise ValueError("experts must be unique")
        for table in (self.stats, self.overall):
            extra = sorted(set(table) - set(self.experts))
            if extra:
                raise ValueError(f"counts for expert(s) not in experts: {', '.join(extra)}")
        return self

    # -- lookups -----------------------------------------------------------------------
    def _expert(self, expert: str) -> str:
        if expert not in self.experts:
            raise unknown_name("expert", expert, self.experts)
        return expert

    @property
    def skills(self) -> list[str]:
        """Every skill some expert has counts for, sorted."""
        return sorted({skill for table in self.stats.values() for skill in table})

    def counts(self, expert: str, skill: str | None = None) -> SkillStats:
        """Counts of ``expert`` on ``skill`` (overall when ``skill`` is None); zeros if unseen."""
        self._expert(expert)
        if skill is None:
            return self.overall.get(expert, SkillStats())
        return self.stats.get(expert, {}).get(normalise_skill(skill), SkillStats())

    def score(self, expert: str, skill: str) -> int:
        """Symbolic-MoE local score of ``expert`` on ``skill`` (0 when unseen)."""
        return self.counts(expert, skill).score

    def measured(self, expert: str) -> bool:
        """Whether the profile holds any scored answer of ``expert``."""
        return self.counts(expert).n > 0

    def competence(self, expert: str) -> float:
        """Overall accuracy of ``expert``, Beta(1, 1)-smoothed: the global competence prior.

        Without evidence: just below the weakest measured expert (0.5 when nobody is measured)."""
        total = self.counts(expert)
        if total.n == 0:
            measured = [self._smoothed(e) for e in self.experts if self.counts(e).n > 0]
            return max(0.0, min(measured) - UNMEASURED_MARGIN) if measured else 0.5
        return self._smoothed(expert)

    def _smoothed(self, expert: str) -> float:
        total = self.counts(expert)
        return (total.correct + 1.0) / (total.n + 2.0)

    def _posterior(self, expert: str, skill: str | None) -> tuple[float, float]:
        # memoised: routing asks for the same (expert, skill) pairs over and over; a profile is
        # not changed after it is built (ProfileBuilder makes a new one)
        key = (expert, skill)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._compute_posterior(expert, skill)
        return found

    def _compute_posterior(self, expert: str, skill: str | None) -> tuple[float, float]:
        if skill is None:
            total = self.counts(expert)
            if total.n == 0:  # no evidence: the competence prior, as two pseudo-answers
                prior = self.competence(expert)
                return 2.0 * prior, 2.0 * (1.0 - prior)
            return total.correct + 1.0, total.n - total.correct + 1.0
        counts = self.counts(expert, skill)
        prior = self.competence(expert)
        strength = max(self.prior_strength, 1e-6)
        return counts.correct + strength * prior, counts.n - counts.correct + strength * (1.0 - prior)

    def accuracy(self, expert: str, skill: str | None = None) -> float:
        """Smoothed accuracy of ``expert`` on ``skill`` (overall when None; the prior when unseen)."""
        a, b = self._posterior(expert, skill)
        return a / (a + b)

    def uncertainty(self, expert: str, skill: str | None = None) -> float:
        """Standard deviation of the Beta posterior behind ``accuracy``."""
        a, b = self._posterior(expert, skill)
        return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))

    def best_expert(self, skill: str | None = None) -> str:
        """The expert with the highest smoothed accuracy on ``skill`` (overall when None)."""
        return max(self.experts, key=lambda e: (self.accuracy(e, skill), self.competence(e), e))


class ProfileBuilder:
    """Accumulates scored answers, then makes a ``Profile``."""

    def __init__(
        self, experts: Iterable[str], *, name: str = "profile", source: str = "", prior_strength: float = 4.0
    ) -> None:
        self.experts = list(dict.fromkeys(experts))
        if not self.experts:
            raise BadInput("a profile needs at least one expert")
        self.name, self.source, self.prior_strength = name, source, prior_strength
        self._stats: dict[str, dict[str, list[int]]] = {e: {} for e in self.experts}
        self._overall: dict[str, list[int]] = {e: [0, 0] for e in self.experts}

    def add(self, expert: str, skills: Iterable[str], correct: bool) -> None:
        """Count one answer of ``expert`` on a question with ``skills``."""
        if expert not in self._stats:
            raise unknown_name("expert", expert, self.experts)
        right = 1 if correct else 0
        total = self._overall[expert]
        total[0] += 1
        total[1] += right
        for skill in dict.fromkeys(normalise_skill(s) for s in skills):
            if skill:
                counts = self._stats[expert].setdefault(skill, [0, 0])
                counts[0] += 1
                counts[1] += right

    def build(self, *, relabelled: int = 0) -> Profile:
        return Profile(
            relabelled=relabelled,
            name=self.name,
            source=self.source,
            prior_strength=self.prior_strength,
            experts=self.experts,
            stats={
                e: {s: SkillStats(n=c[0], correct=c[1]) for s, c in sorted(table.items())}
                for e, table in self._stats.items()
            },
            overall={e: SkillStats(n=c[0], correct=c[1]) for e, c in self._overall.items()},
        )
