"""Seeded splits and samples of benchmark items, keyed by item id.

One convention for every train/test split and every seeded draw in the project: the items
are put in id order (numeric ids numerically, others after them as text), shuffled by
``random.Random(seed)``, and cut. The result depends only on the set of ids and the seed,
never on the order the items came in, so two scripts given the same questions and seed
report on the same ones.

    train, test = split(questions, 0.5, seed=0)
    drawn = sample(questions, 20, seed=0)      # the first 20 of the same seeded order
    even = stratified_sample(questions, 20, seed=0)   # 20 with each category's share
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

from common.errors import BadInput


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


def _id_key(item_id: str) -> tuple[int, int, str]:
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


def seeded_order(items: Sequence[T], seed: int) -> list[T]:
    """``items`` in id order, shuffled by ``seed``; repeated ids are an error."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BadInput(f"item ids must be unique to split or sample them; repeated: {item.id!r}")
        seen.add(item.id)
    ordered = sorted(items, key=lambda item: _id_key(item.id))
    random.Random(seed).shuffle(ordered)
    return ordered


def split(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Disjoint (first, rest): the first ``int(len(items) * fraction)`` items of the seeded order."""
    if not 0.0 <= fraction <= 1.0:
        raise BadInput(f"split fraction must be in [0, 1], got {fraction}")
    ordered = seeded_order(items, seed)
    cut = int(len(ordered) * fraction)
    return ordered[:cut], ordered[cut:]


def sample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """The first ``n`` items of the seeded order; every item (as given) when ``n`` is None or larger."""
    if n is not None and n < 0:
        raise BadInput(f"sample size must be >= 0, got {n}")
    if n is None or n >= len(items):
        seeded_order(items, seed)  # the same check of ids either way
        return list(items)
    return seeded_order(items, seed)[:n]


def _category(item: HasId) -> Hashable:
    return getattr(item, "category", None)


def _group_order(key: Hashable) -> tuple[bool, str, str]:
    return (key is None, type(key).__name__, str(key))


def stratified_sample(
    items: Sequence[T], n: int | None, seed: int, key: Callable[[T], Hashable] = _category
) -> list[T]:
    """``n`` items drawn so that each group (by ``key``: the category) gets its share of ``n``.

    Shares are ``n * group size / len(items)``, rounded down, the items left over going to the
    largest remainders (ties in a seeded order of the groups); while ``n`` allows, every group
    gets at least one, taken from the groups with the most. Within a group the items are the
    first of the seeded order, and the sample comes back in that order: like ``sample`` it
    depends only on the ids, the groups and the seed, never on the order given.
    """
    if n is not None and n < 0:
        raise BadInput(f"sample size must be >= 0, got {n}")
    ordered = seeded_order(items, seed)
    if n is None or n >= len(items):
        return list(items)
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for item in ordered:
        groups[key(item)].append(item)
    names = sorted(groups, key=_group_order)
    random.Random(seed).shuffle(names)  # a seeded order to break ties in
    rank = {name: i for i, name in enumerate(names)}
    scaled = {name: n * len(groups[name]) for name in names}  # the exact share times len(items)
    quota = {name: scaled[name] // len(items) for name in names}
    by_remainder = sorted(names, key=lambda name: (-(scaled[name] % len(items)), rank[name]))
    for name in by_remainder[: n - sum(quota.values())]:
        quota[name] += 1
    if n >= len(names):
        for name in sorted(names, key=lambda name: (-scaled[name], rank[name])):
            if quota[name] == 0:
                donor = max(names, key=lambda other: (quota[other], -rank[other]))
                quota[donor] -= 1
                quota[name] = 1
    chosen = {item.id for name in names for item in groups[name][: quota[name]]}
    return [item for item in ordered if item.id in chosen]


PROFILE_SHARE = 0.5
"""The share of a benchmark split that profiling uses; the rest is left for evaluation."""

PARTITION_SEED = 0
"""The fixed seed of the profiling/evaluation partition, so every command agrees on it."""


def partition(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """(profiling part, evaluation part) of a benchmark split: disjoint, fixed, keyed by item id."""
    return split(items, PROFILE_SHARE, PARTITION_SEED)
