"""The one judge (``common.answers.Judge``): format variants of one answer are one answer,
different answers are not, option texts are their letters, blanks abstain; and the votes count
answers by it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregators import ExpertAnswer, agreement, majority, weighted
from common.answers import AnswerKind, Judge

NUMBER = Judge(AnswerKind.NUMBER)
TEXT = Judge(AnswerKind.TEXT)
MATH = Judge(AnswerKind.MATH)

cents = st.integers(min_value=-(10**9), max_value=10**9)


def written(value_cents: int) -> list[str]:
    """Ways people and models write one amount."""
    whole, frac = divmod(abs(value_cents), 100)
    sign = "-" if value_cents < 0 else ""
    plain = f"{sign}{whole}" + (f".{frac:02d}" if frac else "")
    grouped = f"{sign}{whole:,}" + (f".{frac:02d}" if frac else "")
    return [
        plain,
        f"{sign}{whole}.{frac:02d}",
        f"{sign}{whole}.{frac:02d}0",
        grouped,
        f"{sign}${whole:,}.{frac:02d}",
        f"{grouped} dollars",
        f" {plain} ",
    ]


@given(cents)
def test_format_variants_of_one_number_are_one_answer(value):
    variants = written(value)
    for judge in (NUMBER, TEXT):
        keys = {judge.key(v) for v in variants}
        assert len(keys) == 1 and None not in keys, (variants, keys)
        assert all(judge.same(variants[0], v) for v in variants)
        assert len(set(judge.keys(variants))) == 1


@given(cents, cents)
def test_different_numbers_are_different_answers(a, b):
    if a == b:
        return
    for judge in (NUMBER, TEXT):
        assert not judge.same(written(a)[3], written(b)[4])
        assert judge.key(written(a)[0]) != judge.key(written(b)[0])


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=999))
def test_fractions_and_percent_signs(top, bottom):
    assert NUMBER.same(f"{top}/{bottom}", repr(top / bottom))
    assert NUMBER.same(f"{top}%", str(top))  # the sign is a unit


def test_a_tolerance_compares_close_numbers():
    loose = Judge(AnswerKind.NUMBER, tolerance=1e-3)
    assert loose.same("0.3333", "1/3") and not NUMBER.same("0.3333", "1/3")
    assert loose.keys(["0.3333", "1/3", "0.5"]) == [loose.key("0.3333"), loose.key("0.3333"), "0.5"]


@given(st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True), st.data())
def test_an_option_text_is_its_letter(options, data):
    judge = Judge(AnswerKind.LETTER, tuple(options))
    letters = "ABCDEFGHIJ"[: len(options)]
    i = data.draw(st.integers(min_value=0, max_value=len(options) - 1))
    letter = letters[i]
    for said in (letter, letter.lower(), f"({letter})", f"{letter}.", f"**{letter}**"):
        assert judge.key(said) == letter, said
    if judge.key(options[i]) is not None:  # option texts that normalise alike are ambiguous
        assert judge.key(options[i]) in letters
    assert judge.correct(f"({letter.lower()})", letter)


@pytest.mark.parametrize("n_options", [0, 4, 10])
def test_one_character_answers_are_letters_of_the_options_only(n_options):
    """A bare letter is read at once: exactly the letters A-J (either case) within the options;
    any other character, even one whose capital is such a letter (dotless i), is no letter."""
    options = tuple(f"option {i}" for i in range(n_options))
    judge = Judge(AnswerKind.LETTER, options)
    letters = "ABCDEFGHIJ"[: n_options or 10]
    for char in [chr(c) for c in range(32, 0x250)] + ["\u0131", "\u017f", "\uff23"]:
        expected = char.upper() if char.isascii() and char.upper() in letters and len(char.strip()) == 1 else None
        assert judge.key(char) == expected, repr(char)
        assert judge.key(f" *{char}* ") == expected, repr(char)


def test_letters_beyond_the_options_and_other_text_are_unreadable():
    judge = Judge(AnswerKind.LETTER, ("Oxygen", "Carbon dioxide", "Nitrogen"))
    assert judge.key("carbon dioxide") == "B" and judge.key("B) Carbon dioxide") == "B"
    assert judge.key("D") is None and judge.key("Helium") is None and judge.key("A question") is None
    assert not judge.correct("D", "D")


@pytest.mark.parametrize("kind", list(AnswerKind))
@pytest.mark.parametrize("blank", [None, "", "   ", "\n\t"])
def test_blanks_abstain_and_are_never_right(kind, blank):
    judge = Judge(kind, ("x", "y"))
    assert judge.key(blank) is None
    assert judge.keys([blank, blank]) == [None, None]
    assert not judge.same(blank, blank)
    assert not judge.correct(blank, "A")


def test_math_answers_are_compared_as_mathematics():
    assert MATH.same("\\frac{1}{2}", "0.5") and MATH.key("\\dfrac{1}{2}") == "0.5"
    assert MATH.same("\\boxed{x^2 + 1}", "1 + x^2")
    assert not MATH.same("x^2", "x^3")
    assert MATH.keys(["x^2+1", "1+x^2", "x"]) == ["x^2+1", "x^2+1", "x"]


def test_integer_gold_may_list_accepted_values():
    judge = Judge(AnswerKind.INTEGER)
    assert judge.key("025") == "25" and judge.key("2,125") == "2125" and judge.key("25 or 26") is None
    assert judge.correct("81", "080 or 081") and not judge.correct("82", "080 or 081")


def test_text_answers_normalise_case_articles_and_punctuation():
    assert TEXT.same("The Eiffel Tower.", "eiffel tower") and TEXT.key("A") == "a"
    assert not TEXT.same("Paris", "Lyon")


def _answers(*choices: str | None) -> list[ExpertAnswer]:
    return [ExpertAnswer(expert=f"e{i}", text=c or "", choice=c) for i, c in enumerate(choices)]


@given(cents, st.integers(min_value=1, max_value=5))
def test_the_majority_counts_format_variants_as_one_vote(value, others):
    right = written(value)
    wrong = [written(value + 100 * (i + 1))[0] for i in range(min(others, 2))]
    result = majority(_answers(*right[:3], *wrong), judge=NUMBER)
    assert NUMBER.same(result.choice, right[0]) and len(result.agreed_with) == 3
    assert result.confidence == pytest.approx(3 / (3 + len(wrong)))


def test_blanks_never_win_a_vote():
    result = majority(_answers("", "", "", "12", "12.0", "13"), judge=NUMBER)
    assert result.choice in {"12", "12.0"} and result.agreed_with == ("e3", "e4")
    assert result.confidence == pytest.approx(2 / 6)
    assert majority(_answers("", None, " "), judge=NUMBER).choice is None
    scored = weighted(_answers("", "", "7", "7.00"), competence=dict.fromkeys(["e0", "e1", "e2", "e3"], 0.6))
    assert scored.choice == "7" and scored.agreed_with == ("e2", "e3")


def test_agreement_is_the_judge_s():
    agreed, share = agreement(_answers("$7,425.00", "7425", "7424", ""), "7425.00", NUMBER)
    assert agreed == ("e0", "e1") and share == pytest.approx(0.5)
    assert agreement(_answers("", ""), "", NUMBER) == ((), 0.0)
