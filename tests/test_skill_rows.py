"""SkillRows: a batch's skill weights normalised once, and the expected-accuracy and score
matrices the policies read, equal to the one-query definitions to the last bit."""

from __future__ import annotations

import random

import pytest

from common.errors import BadInput
from router import ProfileLookup, Router, SkillRows, expected_accuracy, symbolic_scores
from router.policies import Asking
from router.skill_rows import expected_accuracies, normalised, symbolic_score_rows
from skills import ProfileBuilder

EXPERTS = ["strong", "lawyer", "weak", "mid", "new"]


def profile():
    """Four measured experts on three skills (uneven counts, so the smoothed numbers are not
    round), and one the profile never saw."""
    b = ProfileBuilder(EXPERTS)
    table = {"strong": (0.9, 0.3, 0.55), "lawyer": (0.3, 0.8, 0.45), "weak": (0.1, 0.1, 0.2), "mid": (0.5, 0.5, 0.5)}
    for expert, rates in table.items():
        for skill, rate, n in zip(("mathematics", "law", "history"), rates, (97, 61, 13), strict=True):
            for i in range(n):
                b.add(expert, [skill], i < rate * n)
    return b.build()


ROWS = [
    {"mathematics": 0.7, "law": 0.2, "history": 0.1},
    {"law": 1.0},
    {"history": 0.31, "topic:3": 0.29, "mathematics": 0.4},
    {},  # no skill: the overall accuracy
    {"unknown skill": 0.5, "law": 0.5},
    {"mathematics": 0.123456789, "law": 0.987654321},
]


def plain_expected(lookup, skills):
    """The definition, term by term: each expert's accuracy averaged over the skills by weight."""
    total = sum(skills.values())
    if total <= 0:
        return {e: lookup.accuracy(e) for e in lookup.experts}
    return {e: sum(w * lookup.accuracy_column(s)[e] for s, w in skills.items()) / total for e in lookup.experts}


def plain_symbolic(lookup, skills):
    return {
        e: lookup.competence(e) * sum(w * lookup.score_column(s)[e] for s, w in skills.items()) for e in lookup.experts
    }


def test_batch_matrices_equal_the_one_query_definitions_exactly():
    lookup = ProfileLookup(profile())
    expected = expected_accuracies(lookup, ROWS)
    symbolic = symbolic_score_rows(lookup, ROWS)
    assert expected.shape == symbolic.shape == (len(ROWS), len(EXPERTS))
    for i, skills in enumerate(ROWS):
        assert dict(zip(lookup.experts, expected[i].tolist())) == plain_expected(lookup, skills)
        assert dict(zip(lookup.experts, symbolic[i].tolist())) == plain_symbolic(lookup, skills)
        # one query alone gives the same numbers as in the batch
        assert expected_accuracy(lookup, skills) == plain_expected(lookup, skills)
        assert symbolic_scores(lookup, skills) == plain_symbolic(lookup, skills)
    assert expected_accuracies(lookup, []).shape == (0, len(EXPERTS))


def test_skill_rows_normalise_once_and_keep_their_matrices_per_profile():
    rows = SkillRows([{"law": 2.0, "mathematics": 6.0, "history": 0.0}, {"law": 0.0}])
    assert rows.rows == [{"mathematics": 0.75, "law": 0.25}, {}]  # largest first, zeros dropped
    assert len(rows) == 2
    assert rows.confidences == [0.75, 0.0]
    lookup = ProfileLookup(profile())
    first = rows.expected(lookup)
    assert rows.expected(lookup) is first  # made once
    assert first == [plain_expected(lookup, r) for r in rows.rows]
    other = ProfileLookup(profile())
    assert rows.expected(other) is not first and rows.expected(other) == first
    assert rows.symbolic(lookup) == [plain_symbolic(lookup, r) for r in rows.rows]
    # confidence leaves clustering topics aside
    assert SkillRows([{"topic:1": 3.0, "law": 1.0}]).confidences == [1.0]
    assert normalised({"a": 1.0, "b": 3.0, "c": 1.0}) == {"b": 0.6, "a": 0.2, "c": 0.2}  # ties keep their order
    for bad in (-0.1, float("nan")):
        with pytest.raises(BadInput, match="weights must be >= 0"):
            SkillRows([{"law": bad}])


class Fixed:
    name = "fixed"

    def skill_weights(self, texts):
        return [ROWS[int(t)] for t in texts]


@pytest.mark.parametrize("policy", ["all", "adaptive", "symbolic", "random", "category", "top-p", "cascade"])
def test_routers_sharing_skill_rows_decide_as_from_plain_weights(policy):
    router = Router(profile(), Fixed(), policy, k=2, seed=7)
    ids = [f"q{i}" for i in range(len(ROWS))]
    shared = SkillRows(ROWS)
    assert router.route_weights(shared, ids) == router.route_weights(ROWS, ids)
    assert router.route_weights(shared, ids) == router.route([str(i) for i in range(len(ROWS))], ids)
    with pytest.raises(BadInput, match="2 question ids for 6 queries"):
        router.route_weights(shared, ids[:2])


def test_batch_competences_equal_each_decisions_competence():
    router = Router(profile(), Fixed(), "all")
    decisions = router.route_weights(ROWS)
    lookup = ProfileLookup(profile())
    batch = router.competences(decisions)
    assert batch == [router.competence(d) for d in decisions]
    assert batch == [plain_expected(lookup, d.skills) for d in decisions]
    assert router.competences([]) == []


def test_a_query_draws_from_its_own_seed_made_on_first_use():
    rows = SkillRows(ROWS)
    lookup = ProfileLookup(profile())
    query = Asking(rows, 0, lookup, "7:q0")
    assert query.skills == rows.rows[0]
    assert query.expected == plain_expected(lookup, rows.rows[0])
    assert query.symbolic == plain_symbolic(lookup, rows.rows[0])
    reference = random.Random("7:q0")
    assert [query.rng.random() for _ in range(3)] == [reference.random() for _ in range(3)]
    assert query.rng is query.rng
