"""How likely a majority vote of some experts is to be right, from their accuracies.

Model: with probability ``agreement`` the experts err together (the vote is as good as
the first, best-ranked expert); otherwise they answer independently, each right with its
own probability, and wrong answers land on distinct options (likely with many options;
``n_options`` <= the number of experts makes collisions certain and is handled by
counting a wrong letter shared by all wrong voters as the worst case). Ties go to the
expert ranked first, as the vote does (ties broken by competence).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

from common.errors import BadInput


def _independent(accuracies: Sequence[float], n_options: int) -> float:
    right_total = 0.0
    for pattern in product((True, False), repeat=len(accuracies)):
        chance = 1.0
        for p, right in zip(accuracies, pattern):
            chance *= p if right else 1.0 - p
        if chance == 0.0:
            continue
        n_right = sum(pattern)
        n_wrong = len(pattern) - n_right
        if n_right == 0:
            continue
        # wrong votes spread over n_options - 1 letters: largest wrong group, at least 1
        biggest_wrong = 0 if n_wrong == 0 else max(1, -(-n_wrong // (n_options - 1)))
        if n_right > biggest_wrong:
            right_total += chance
        elif n_right == biggest_wrong and pattern.index(True) < (pattern.index(False) if n_wrong else 99):
            # a tie: the first-ranked voter among the tied letters wins; with distinct wrong
            # letters that is the first-ranked voter overall
            right_total += chance
    return right_total


def vote_accuracy(accuracies: Sequence[float], n_options: int = 10, agreement: float = 0.0) -> float:
    """Estimated chance the majority vote of experts with these accuracies (best-ranked first) is right."""
    if not accuracies:
        raise BadInput("vote_accuracy needs at least one expert")
    if len(accuracies) > 12:
        raise BadInput(f"vote_accuracy enumerates outcomes; {len(accuracies)} experts is too many (max 12)")
    if not 0.0 <= agreement <= 1.0:
        raise BadInput(f"agreement must be in [0, 1], got {agreement}")
    for p in accuracies:
        if not 0.0 <= p <= 1.0:
            raise BadInput(f"accuracy {p} is not a probability")
    independent = _independent(accuracies, n_options)
    return agreement * accuracies[0] + (1.0 - agreement) * independent
