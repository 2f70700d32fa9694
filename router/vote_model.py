"""How likely a majority vote of some experts is to be right, from their accuracies.

Experts do not err independently: some questions are hard for all of them. The model
gives each question a shared difficulty ``d ~ N(0, spread^2)`` on the logit scale; given
``d`` the experts answer independently, expert ``e`` right with probability
``sigmoid(a_e - d)``, where ``a_e`` is set so that its average over ``d`` (a 9-point
Gauss-Hermite rule) is the expert's accuracy (rounded to 4 places). Wrong answers spread
as evenly as possible over the ``n_options - 1`` wrong letters (so with many options they
rarely coincide). Ties go to the expert ranked first,
as the vote does (ties broken by competence). ``spread = 0`` means independent experts;
a large spread makes them right or wrong together, so extra experts add little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np

from common.errors import BadInput

_NODES = 9  # Gauss-Hermite points for the average over the shared difficulty


@lru_cache(maxsize=1)
def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(_NODES)
    return nodes, weights / weights.sum()


Chance: TypeAlias = Any
"""A probability (float), or an array of them (one per quadrature node) computed elementwise alike."""


def _add_expert(dist: list[Chance], p: Chance) -> list[Chance]:
    """The count distribution ``dist`` with one more independent expert, right with chance ``p``."""
    q = 1.0 - p
    return [dist[0] * q, *(dist[r - 1] * p + dist[r] * q for r in range(1, len(dist))), dist[-1] * p]


def _biggest_wrong(n_wrong: int, n_options: int) -> int:
    """Largest group of wrong votes when they spread as evenly as possible over the wrong letters."""
    return 0 if n_wrong == 0 else -(-n_wrong // (n_options - 1))


@lru_cache(maxsize=4096)
def _winning_counts(n: int, n_options: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How many of the ``n`` other experts may be right for the vote to be right: when the
    first-ranked expert is right, and when it is wrong."""
    # the first-ranked expert right: it wins ties, so the right letter needs >= the biggest wrong group
    if_right = tuple(r for r in range(n + 1) if r + 1 >= _biggest_wrong(n - r, n_options))
    # the first-ranked expert wrong: its letter is in the biggest wrong group and wins ties
    if_wrong = tuple(r for r in range(n + 1) if r > _biggest_wrong(n - r + 1, n_options))
    return if_right, if_wrong


def _total(dist: list[Chance], counts: tuple[int, ...]) -> Chance:
    total: Chance = 0
    for r in counts:  # left to right, one addition at a time
        total = total + dist[r]
    return total


def _vote(first: Chance, others: list[Chance], n_options: int) -> Chance:
    """Vote accuracy when the first-ranked expert is right with chance ``first`` and ``others``
    is the count distribution of the rest."""
    if_right, if_wrong = _winning_counts(len(others) - 1, n_options)
    return first * _total(others, if_right) + (1.0 - first) * _total(others, if_wrong)


def _prefix_votes(chances: Sequence[Chance], n_options: int) -> list[Chance]:
    """Vote accuracy of the first 1, 2, ... independent experts; the count distribution of the
    others grows by one expert at a time (the same arithmetic as computing each from scratch)."""
    out, dist = [], [chances[0] * 0.0 + 1.0]
    for size in range(1, len(chances) + 1):
        if size > 1:
            dist = _add_expert(dist, chances[size - 1])
        out.append(_vote(chances[0], dist, n_options))
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


@lru_cache(maxsize=65536)
def _offset(p: float, spread: float) -> float:
    """The ``a`` whose average of sigmoid(a + spread * z) over the quadrature is ``p`` (bisection)."""
    nodes, weights = _quadrature()
    low, high = -60.0 - 6 * spread, 60.0 + 6 * spread
    for _ in range(60):
        mid = (low + high) / 2
        if sum(w * _sigmoid(mid + spread * z) for z, w in zip(nodes, weights)) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def vote_accuracy(accuracies: Sequence[float], n_options: int = 10, spread: float = 0.0) -> float:
    """Estimated chance the majority vote of experts with these accuracies (best-ranked first) is right."""
    return vote_accuracies(accuracies, n_options, spread)[-1]


def vote_accuracies(accuracies: Sequence[float], n_options: int = 10, spread: float = 0.0) -> list[float]:
    """``vote_accuracy`` of the first 1, 2, ..., all of these experts (best-ranked first), in one pass."""
    if not accuracies:
        raise BadInput("vote_accuracy needs at least one expert")
    if len(accuracies) > 64:
        raise BadInput(f"vote_accuracy takes at most 64 experts, got {len(accuracies)}")
    if n_options < 2:
        raise BadInput(f"n_options must be >= 2, got {n_options}")
    if not 0.0 <= spread <= 50.0:
        raise BadInput(f"spread must be in [0, 50], got {spread}")
    for p in accuracies:
        if not 0.0 <= p <= 1.0:
            raise BadInput(f"accuracy {p} is not a probability")
    if spread == 0.0:
        return _prefix_votes(list(accuracies), n_options)
    alone = _prefix_votes([accuracies[0]], n_options)  # one expert: its accuracy, no spread
    offsets = [_offset(round(p, 4), spread) for p in accuracies]
    nodes, weights = _quadrature()
    # each expert's chance to be right at every node of the shared difficulty, all nodes at once
    at_nodes = _prefix_votes([np.array([_sigmoid(a + spread * z) for z in nodes]) for a in offsets], n_options)
    totals = []
    for votes in at_nodes[1:]:
        total = 0.0
        for w, vote in zip(weights, votes):
            total += w * vote
        totals.append(float(total))
    return alone + totals
