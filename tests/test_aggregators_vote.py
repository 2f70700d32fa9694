"""Vote aggregators: majority with its tie-breaks, competence-weighted votes, the registry."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aggregators
from aggregators import ExpertAnswer, get_voter, log_odds_weight, majority, weighted
from common.errors import BadInput, NotFound


def answers(*pairs: tuple[str, str | None], competence: dict[str, float] | None = None) -> list[ExpertAnswer]:
    competence = competence or {}
    return [
        ExpertAnswer(expert=name, text=f"{name} says {choice}", choice=choice, competence=competence.get(name))
        for name, choice in pairs
    ]


def test_public_names_are_exported():
    for name in aggregators.__all__:
        assert hasattr(aggregators, name), name
    assert {"majority", "weighted", "synthesis_request", "compose", "select_aggregator"} <= set(aggregators.__all__)


def test_majority_picks_most_votes_and_reports_share():
    result = majority(answers(("a", "B"), ("b", "B"), ("c", "C"), ("d", None)))
    assert result.choice == "B"
    assert result.agreed_with == ("a", "b")
    assert result.inputs == ("a", "b", "c", "d")
    assert result.confidence == pytest.approx(2 / 4)  # the unparseable answer counts in the share
    assert result.scores == {"B": 2, "C": 1}
    assert result.method == "majority"
    assert result.text in ("a says B", "b says B")


def test_majority_tie_goes_to_more_competent_supporters():
    pairs = (("a", "A"), ("b", "B"))
    assert majority(answers(*pairs), competence={"a": 0.3, "b": 0.7}).choice == "B"
    assert majority(answers(*pairs), competence={"a": 0.8, "b": 0.7}).choice == "A"
    # competence as a function works the same way
    assert majority(answers(*pairs), competence=lambda name: {"a": 0.1, "b": 0.2}[name]).choice == "B"


def test_majority_tie_without_competence_is_deterministic():
    first = majority(answers(("x", "D"), ("y", "C")))
    second = majority(answers(("y", "C"), ("x", "D")))
    assert first.choice == second.choice == "C"


def test_majority_text_comes_from_the_most_competent_backer():
    result = majority(
        answers(
            ("weak", "A"),
            ("strong", "A"),
            ("other", "B"),
            competence={"weak": 0.2, "strong": 0.9, "other": 0.5},
        )
    )
    assert result.text == "strong says A"


def test_no_parseable_answer_gives_no_choice():
    result = majority(answers(("a", None), ("b", None)))
    assert result.choice is None and result.confidence == 0.0 and result.agreed_with == ()


def test_vote_input_errors():
    with pytest.raises(BadInput, match="at least one"):
        majority([])
    with pytest.raises(BadInput, match="repeated: a"):
        majority(answers(("a", "A"), ("a", "B")))
    with pytest.raises(BadInput, match="in \\[0, 1\\]"):
        majority(answers(("a", "A")), competence={"a": 1.5})


def test_log_odds_weight():
    assert log_odds_weight(0.5) == pytest.approx(0.0)
    assert log_odds_weight(0.8) == pytest.approx(math.log(4))
    assert log_odds_weight(0.2) == pytest.approx(-math.log(4))
    assert log_odds_weight(1.0) == pytest.approx(math.log(0.99 / 0.01))  # clipped
    assert log_odds_weight(0.1, n_options=10) == pytest.approx(0.0)  # chance level weighs nothing
    with pytest.raises(BadInput):
        log_odds_weight(0.5, clip=0.7)


def test_weighted_lets_one_strong_expert_outvote_two_weak_ones():
    votes = answers(("strong", "A"), ("weak1", "B"), ("weak2", "B"))
    competence = {"strong": 0.95, "weak1": 0.6, "weak2": 0.6}
    assert majority(votes, competence=competence).choice == "B"
    result = weighted(votes, competence=competence)
    assert result.choice == "A"
    assert result.scores["A"] == pytest.approx(math.log(0.95 / 0.05))
    assert result.scores["B"] == pytest.approx(2 * math.log(0.6 / 0.4))
    expected = 1 / (1 + math.exp(result.scores["B"] - result.scores["A"]))
    assert result.confidence == pytest.approx(expected)
    assert result.agreed_with == ("strong",)


def test_weighted_equal_competence_matches_majority():
    votes = answers(("a", "C"), ("b", "C"), ("c", "D"))
    same = {"a": 0.7, "b": 0.7, "c": 0.7}
    assert weighted(votes, competence=same).choice == majority(votes).choice == "C"


def test_weighted_multiclass_form_changes_the_sign_of_weak_experts():
    # 0.3 is below 0.5 (negative plain log-odds) but above chance for 10 options
    votes = answers(("a", "A"), ("b", "A"), ("c", "B"))
    competence = {"a": 0.3, "b": 0.3, "c": 0.3}
    plain = weighted(votes, competence=competence)
    multi = weighted(votes, competence=competence, n_options=10)
    assert plain.choice == "B"  # two negative weights sum lower than one
    assert multi.choice == "A"
    # unvoted options count in the confidence when n_options is given
    assert multi.confidence < 1.0 and multi.confidence > 1 / 10


def test_weighted_needs_every_competence():
    with pytest.raises(BadInput, match="missing: b"):
        weighted(answers(("a", "A"), ("b", "B")), competence={"a": 0.6})
    # the answers' own field serves when no mapping is given
    result = weighted(answers(("a", "A"), ("b", "B"), competence={"a": 0.9, "b": 0.6}))
    assert result.choice == "A"


def test_registry_finds_voters_and_suggests_on_typos():
    assert get_voter("majority") is majority
    assert get_voter("weighted") is weighted
    with pytest.raises(NotFound, match="did you mean 'weighted'"):
        get_voter("weigted")


choices = st.lists(st.sampled_from(["A", "B", "C", "D", None]), min_size=1, max_size=8)


@given(choices)
def test_majority_winner_has_the_most_votes(picks):
    votes = answers(*((f"e{i}", c) for i, c in enumerate(picks)))
    result = majority(votes)
    counted = {c: picks.count(c) for c in picks if c is not None}
    if not counted:
        assert result.choice is None
        return
    assert counted[result.choice] == max(counted.values())
    assert result.confidence == pytest.approx(counted[result.choice] / len(picks))
    assert len(result.agreed_with) == counted[result.choice]


@given(choices, st.floats(min_value=0.11, max_value=0.99))
def test_weighted_with_equal_competence_agrees_with_majority(picks, p):
    votes = answers(*((f"e{i}", c) for i, c in enumerate(picks)))
    same = {f"e{i}": p for i in range(len(picks))}
    counted = {c: picks.count(c) for c in picks if c is not None}
    if not counted or list(counted.values()).count(max(counted.values())) > 1:
        return  # ties are broken differently by design
    assert weighted(votes, competence=same, n_options=10).choice == majority(votes).choice
