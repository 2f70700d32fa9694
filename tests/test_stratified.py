"""stratified_sample: each category gets its share, every category one while n allows, and the
draw depends on ids, categories and seed only."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import BadInput
from eval import Question, sample, stratified_sample


def items(sizes: dict[str | None, int]) -> list[Question]:
    out, n = [], 0
    for category, size in sizes.items():
        for _ in range(size):
            out.append(Question(id=str(n), benchmark="t", text=f"q{n}", answer="A", category=category))
            n += 1
    return out


def shares(drawn: list[Question]) -> dict[str | None, int]:
    return dict(Counter(q.category for q in drawn))


def test_each_category_gets_its_share():
    drawn = stratified_sample(items({"a": 50, "b": 30, "c": 20}), 10, seed=0)
    assert shares(drawn) == {"a": 5, "b": 3, "c": 2}


def test_leftovers_go_to_the_largest_remainders():
    # exact shares 2.0, 1.2, 0.8: floors 2, 1, 0; the one left goes to c (0.8)
    assert shares(stratified_sample(items({"a": 5, "b": 3, "c": 2}), 4, seed=0)) == {"a": 2, "b": 1, "c": 1}


def test_every_category_at_least_one_while_n_allows():
    pool = items({"big": 97, "x": 1, "y": 1, None: 1})
    assert shares(stratified_sample(pool, 4, seed=3)) == {"big": 1, "x": 1, "y": 1, None: 1}
    assert shares(stratified_sample(pool, 6, seed=3)) == {"big": 3, "x": 1, "y": 1, None: 1}


def test_fewer_than_the_categories():
    pool = items({c: 4 for c in "abcde"})
    drawn = stratified_sample(pool, 3, seed=1)
    assert len(drawn) == 3 and len(shares(drawn)) == 3
    assert [q.id for q in stratified_sample(pool, 3, seed=1)] == [q.id for q in drawn]


def test_independent_of_input_order():
    pool = items({"a": 40, "b": 25, "c": 7, "d": 3})
    shuffled = pool[:]
    random.Random(9).shuffle(shuffled)
    for seed in range(5):
        assert [q.id for q in stratified_sample(shuffled, 12, seed)] == [
            q.id for q in stratified_sample(pool, 12, seed)
        ]
    assert {q.id for q in stratified_sample(pool, 12, 0)} != {q.id for q in stratified_sample(pool, 12, 1)}


def test_within_a_category_the_seeded_order_is_kept():
    pool = items({"a": 30})
    assert [q.id for q in stratified_sample(pool, 7, seed=4)] == [q.id for q in sample(pool, 7, seed=4)]


def test_a_key_of_ones_own():
    pool = items({"a": 10, "b": 10})
    drawn = stratified_sample(pool, 4, seed=0, key=lambda q: int(q.id) % 4)
    assert sorted(int(q.id) % 4 for q in drawn) == [0, 1, 2, 3]


def test_edges():
    pool = items({"a": 3, "b": 2})
    assert stratified_sample(pool, None, 0) == pool
    assert stratified_sample(pool, 99, 0) == pool
    assert stratified_sample(pool, 0, 0) == []
    with pytest.raises(BadInput, match="sample size must be >= 0"):
        stratified_sample(pool, -1, 0)
    with pytest.raises(BadInput, match="repeated: '0'"):
        stratified_sample(pool + pool[:1], 2, 0)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=8), n=st.integers(0, 120), seed=st.integers(0, 9))
def test_shares_property(sizes, n, seed):
    pool = items({f"c{i}": size for i, size in enumerate(sizes)})
    drawn = stratified_sample(pool, n, seed)
    total = len(pool)
    assert len(drawn) == min(n, total) and len({q.id for q in drawn}) == len(drawn)
    if n >= total:
        return
    got = shares(drawn)
    # the at-least-one rule moves one item to each category whose share is under one
    moved = sum(1 for size in sizes if n * size / total < 1) if n >= len(sizes) else 0
    for i, size in enumerate(sizes):
        share, count = n * size / total, got.get(f"c{i}", 0)
        assert count <= size
        if n >= len(sizes):
            assert count >= 1
        assert abs(count - share) < 1 + moved
