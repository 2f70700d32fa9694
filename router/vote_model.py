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

import numpy as np

from common.errors import BadInput

_NODES = 9  # Gauss-Hermite points for the average over the shared difficulty


@lru_cache(maxsize=1)
def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(_NODES)
    return nodes, weights / weights.sum()


def _count_distribution(accuracies: Sequence[float]) -> list[float]:
    """P(exactly r of these experts are right), r = 0..len, experts independent."""
    dist = [1.0]
    for p in accuracies:
        nxt = [0.0] * (len(dist) + 1)
        for r, chance in enumerate(dist):
            nxt[r] += chance * (1.0 - p)
            nxt[r + 1] += chance * p
        dist = nxt
    return dist


def _biggest_wrong(n_wrong: int, n_options: int) -> int:
    """Largest group of wrong votes when they spread as evenly as possible over the wrong letters."""
    return 0 if n_wrong == 0 else -(-n_wrong // (n_options - 1))


def independent_vote_accuracy(accuracies: Sequence[float], n_options: int) -> float:
    """Vote accuracy of independent experts (best-ranked first)."""
    first, rest = accuracies[0], accuracies[1:]
    others = _count_distribution(rest)
    n = len(rest)
    # the first-ranked expert right: it wins ties, so the right letter needs >= the biggest wrong group
    if_right = sum(c for r, c in enumerate(others) if r + 1 >= _biggest_wrong(n - r, n_options))
    # the first-ranked expert wrong: its letter is in the biggest wrong group and wins ties
    if_wrong = sum(c for r, c in enumerate(others) if r > _biggest_wrong(n - r + 1, n_options))
    return first * if_right + (1.0 - first) * if_wrong


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
    if spread == 0.0 or len(accuracies) == 1:
        return independent_vote_accuracy(accuracies, n_options)
    offsets = [_offset(round(p, 4), spread) for p in accuracies]
    nodes, weights = _quadrature()
    total = 0.0
    for z, w in zip(nodes, weights):
        shifted = [_sigmoid(a + spread * z) for a in offsets]
        total += w * independent_vote_accuracy(shifted, n_options)
    return total
