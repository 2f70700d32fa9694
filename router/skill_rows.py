"""A batch of queries' skill weights, and what routing reads of them, computed for the batch at once.

``SkillRows(weights)`` normalises each query's weights once (``normalised``: summing to 1,
largest first); several routers of one pool may route the same rows (an evaluation's
baselines). ``expected_accuracies`` and ``symbolic_score_rows`` give every expert's expected
accuracy and Symbolic-MoE score on every row as one numpy matrix: each row's sums are taken in
the row's own order of skills, one addition after another, exactly as summing one query's
skills term by term does, so a query gets the same numbers alone or in a batch of thousands
(``router.policies.expected_accuracy`` is the batch of one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np

from common.errors import BadInput
from router.lookup import ProfileLookup, lookup_of
from router.topics import TOPIC_PREFIX
from skills.profile import Profile


def normalised(skills: Mapping[str, float]) -> dict[str, float]:
    """The weights over their sum, largest first (ties keep their order), zeros dropped; empty
    when they sum to nothing. A negative or NaN weight is BadInput."""
    for skill, weight in skills.items():
        if not weight >= 0.0:  # also catches NaN
            raise BadInput(f"skill {skill!r} has weight {weight}; weights must be >= 0")
    total = sum(skills.values())
    if total <= 0:
        return {}
    return {s: min(1.0, w / total) for s, w in sorted(skills.items(), key=lambda kv: -kv[1]) if w > 0}


def category_weights(skills: Mapping[str, float]) -> dict[str, float]:
    """The named skills (not clustering topics), renormalised; all skills when there are only topics."""
    named = {s: w for s, w in skills.items() if not s.startswith(TOPIC_PREFIX)}
    total = sum(named.values())
    return {s: w / total for s, w in named.items()} if total > 0 else dict(skills)


class _Columns:
    """Rows of (skill, weight) pairs as padded matrices: ``index[i, j]`` is the j-th skill of row
    i (``len(skills)``: padding), ``weights[i, j]`` its weight (0.0 for padding)."""

    def __init__(self, rows: Sequence[Mapping[str, float]]) -> None:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.intp, count=len(rows))
        names = list(chain.from_iterable(rows))
        self.skills: dict[str, int] = {}
        for name in names:
            self.skills.setdefault(name, len(self.skills))
        count = len(names)
        width = int(lengths.max()) if len(rows) else 0
        which = np.repeat(np.arange(len(rows)), lengths)
        place = np.arange(count) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.index = np.full((len(rows), width), len(self.skills), dtype=np.intp)
        self.index[which, place] = np.fromiter(map(self.skills.__getitem__, names), dtype=np.intp, count=count)
        self.weights = np.zeros((len(rows), width))
        self.weights[which, place] = np.fromiter(
            chain.from_iterable(row.values() for row in rows), dtype=float, count=count
        )

    def weighted_sums(self, table: np.ndarray) -> np.ndarray:
        """Per row and column of ``table`` (skills x experts, in ``skills`` order): the sum over
        the row's skills of weight x table value, added one after another in the row's order."""
        padded = np.vstack([table, np.zeros((1, table.shape[1]))])
        out = np.zeros((self.index.shape[0], table.shape[1]))
        for j in range(self.index.shape[1]):
            out = out + self.weights[:, j, None] * padded[self.index[:, j]]
        return out

    def totals(self) -> np.ndarray:
        """Each row's weights summed one after another, in the row's order."""
        out = np.zeros(self.index.shape[0])
        for j in range(self.index.shape[1]):
            out = out + self.weights[:, j]
        return out


def expected_accuracies(profile: Profile | ProfileLookup, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """(rows x experts, in the lookup's order): each expert's smoothed accuracy averaged over the
    row's skills by weight; its overall accuracy where a row's weights sum to nothing."""
    lookup = lookup_of(profile)
    columns = _Columns(rows)
    table = np.array(
        [[lookup.accuracy_column(s)[e] for e in lookup.experts] for s in columns.skills], dtype=float
    ).reshape(len(columns.skills), len(lookup.experts))
    sums, totals = columns.weighted_sums(table), columns.totals()
    known = totals > 0
    out = np.empty_like(sums)
    out[known] = sums[known] / totals[known, None]
    out[~known] = [lookup.accuracy(e) for e in lookup.experts]
    return out


def symbolic_score_rows(profile: Profile | ProfileLookup, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """(rows x experts): Symbolic-MoE's score, the expert's competence times the sum over the
    row's skills of weight x local score."""
    lookup = lookup_of(profile)
    columns = _Columns(rows)
    table = np.array(
        [[float(lookup.score_column(s)[e]) for e in lookup.experts] for s in columns.skills], dtype=float
    ).reshape(len(columns.skills), len(lookup.experts))
    competence = np.array([lookup.competence(e) for e in lookup.experts], dtype=float)
    return competence * columns.weighted_sums(table)


class SkillRows:
    """Queries' skill weights, normalised once (``rows``); their named skills renormalised
    (``categories``) and confidence (the top one's weight); and, per profile, the matrices
    policies read, each made on first use (a profile's numbers do not change once it is built,
    so every router of one profile shares them)."""

    def __init__(self, weights: Sequence[Mapping[str, float]], *, normalise: bool = True) -> None:
        self.rows: list[dict[str, float]] = [normalised(w) if normalise else dict(w) for w in weights]
        self._categories: list[dict[str, float]] | None = None
        self._confidences: list[float] | None = None
        self._made: dict[tuple[str, int], tuple[Profile, list[dict[str, float]]]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def categories(self) -> list[dict[str, float]]:
        """Each row's ``category_weights``."""
        if self._categories is None:
            self._categories = [category_weights(row) for row in self.rows]
        return self._categories

    @property
    def confidences(self) -> list[float]:
        """Each row's top named skill's weight, at most 1 (0 when it has no skill)."""
        if self._confidences is None:
            self._confidences = [min(1.0, max(row.values(), default=0.0)) for row in self.categories]
        return self._confidences

    def expected(self, lookup: ProfileLookup) -> list[dict[str, float]]:
        """Each row's expected accuracy of every expert (``expected_accuracies``)."""
        return self._by_expert("expected", lookup)

    def symbolic(self, lookup: ProfileLookup) -> list[dict[str, float]]:
        """Each row's Symbolic-MoE score of every expert (``symbolic_score_rows``)."""
        return self._by_expert("symbolic", lookup)

    def _by_expert(self, what: str, lookup: ProfileLookup) -> list[dict[str, float]]:
        made = self._made.get((what, id(lookup.profile)))
        if made is None or made[0] is not lookup.profile:
            matrix = (expected_accuracies if what == "expected" else symbolic_score_rows)(lookup, self.rows)
            experts = lookup.experts
            by_expert = [dict(zip(experts, row)) for row in matrix.tolist()]
            made = self._made[what, id(lookup.profile)] = (lookup.profile, by_expert)
        return made[1]


__all__ = [
    "SkillRows",
    "category_weights",
    "expected_accuracies",
    "normalised",
    "symbolic_score_rows",
]
