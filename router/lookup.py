"""A profile's numbers, memoised for routing many queries.

Routing a benchmark asks the same questions of the profile over and over: each expert's
competence, and its score and smoothed accuracy on each of a few dozen skills, for every
query. ``ProfileLookup`` asks the ``Profile`` once per (expert, skill) and keeps the answer, so
policies read plain dicts; the values are the profile's own, so decisions do not change.
A profile is not changed after it is built (``ProfileBuilder`` makes a new one), which is what
makes keeping its answers safe.
"""

from __future__ import annotations

from collections.abc import Mapping

from skills.profile import Profile


class ProfileLookup:
    """The read side of a ``Profile`` (experts, competence, measured, score, accuracy), memoised,
    with the pool's cost per call of each expert and per-skill columns (expert -> value) for
    scoring many skills at once."""

    def __init__(self, profile: Profile, costs: Mapping[str, float] | None = None) -> None:
        self.profile = profile
        self.costs = {e: float((costs or {}).get(e, 1.0)) for e in profile.experts}
        """Expert -> what one of its calls costs (1 each when the pool declares none)."""
        self.experts: list[str] = list(profile.experts)
        self._competence: dict[str, float] = {}
        self._measured: dict[str, bool] = {}
        self._overall: dict[str, float] = {}
        self._scores: dict[str, dict[str, int]] = {}
        self._accuracy: dict[str, dict[str, float]] = {}
        self._rank_parts: tuple[dict[str, bool], dict[str, float]] | None = None

    def cost(self, expert: str) -> float:
        return self.costs.get(expert, 1.0)

    def competence(self, expert: str) -> float:
        found = self._competence.get(expert)
        if found is None:
            found = self._competence[expert] = self.profile.competence(expert)
        return found

    def measured(self, expert: str) -> bool:
        found = self._measured.get(expert)
        if found is None:
            found = self._measured[expert] = self.profile.measured(expert)
        return found

    def rank_parts(self) -> tuple[dict[str, bool], dict[str, float]]:
        """Expert -> whether the profile has no evidence on it, and expert -> minus its
        competence: what ranking experts reads besides their scores (made once)."""
        if self._rank_parts is None:
            self._rank_parts = (
                {e: not self.measured(e) for e in self.experts},
                {e: -self.competence(e) for e in self.experts},
            )
        return self._rank_parts

    def accuracy(self, expert: str, skill: str | None = None) -> float:
        if skill is not None:
            return self.accuracy_column(skill)[expert]
        found = self._overall.get(expert)
        if found is None:
            found = self._overall[expert] = self.profile.accuracy(expert)
        return found

    def score(self, expert: str, skill: str) -> int:
        return self.score_column(skill)[expert]

    def score_column(self, skill: str) -> dict[str, int]:
        """Every expert's Symbolic-MoE local score on ``skill``."""
        found = self._scores.get(skill)
        if found is None:
            found = self._scores[skill] = {e: self.profile.score(e, skill) for e in self.experts}
        return found

    def accuracy_column(self, skill: str) -> dict[str, float]:
        """Every expert's smoothed accuracy on ``skill``."""
        found = self._accuracy.get(skill)
        if found is None:
            found = self._accuracy[skill] = {e: self.profile.accuracy(e, skill) for e in self.experts}
        return found


def lookup_of(profile: Profile | ProfileLookup) -> ProfileLookup:
    """``profile`` itself when it already is a lookup, else a new lookup over it."""
    return profile if isinstance(profile, ProfileLookup) else ProfileLookup(profile)
