"""Answer kinds: how an answer is read out of a reply (extraction) and judged against the
gold answer (checking).

    letter   an option letter A-J among the question's options     "The answer is (C)"
    integer  a whole number; "025" is 25, "2,125" is 2125           AIME
    number   any number, currency and units ignored, within a tolerance ("$18.00" == 18)
    math     a LaTeX expression, compared by math-verify ("\\frac{1}{2}" == 0.5)
    text     a short text, compared after normalising case, spacing, punctuation, articles

Extraction returns ``None`` when nothing is found; checking never raises (an unreadable
answer or gold is simply not right).
"""

from __future__ import annotations

import logging
import math
import re
import string
import threading
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from eval.extract import (
    integer_extractor,
    last_boxed,
    letter_extractor,
    math_extractor,
    number_extractor,
    numbers_in,
    text_extractor,
)
from eval.question import LETTERS, Question

log = logging.getLogger(__name__)


class AnswerKind(StrEnum):
    LETTER = "letter"
    INTEGER = "integer"
    NUMBER = "number"
    MATH = "math"
    TEXT = "text"


ANSWER_FORMATS: dict[AnswerKind, str] = {
    AnswerKind.LETTER: 'End with the line "The answer is (X)", X being the letter of the chosen option.',
    AnswerKind.INTEGER: "End with the final integer answer in \\boxed{}.",
    AnswerKind.NUMBER: 'End with the line "The answer is N", N being a number.',
    AnswerKind.MATH: "End with the final answer in \\boxed{}.",
    AnswerKind.TEXT: 'End with the line "The answer is X", X being the short answer.',
}
"""The instruction, per kind, that tells a model (or the aggregator) how to state its answer."""


def integer_values(text: str) -> set[int]:
    """The whole numbers written in ``text``: ``{25}`` for "025", ``{80, 81}`` for "080 or 081"."""
    return {int(value) for value in numbers_in(text) if value.is_integer()}


_PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014"
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise_text(text: str) -> str:
    """Casefolded, articles dropped, spacing collapsed, punctuation around it stripped."""
    text = _ARTICLES.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(text.strip().strip(_PUNCTUATION).split()).strip(_PUNCTUATION + " ")


MATH_TIMEOUT_S = 5
"""math-verify's own limit, per parse and per comparison (main thread only: it uses SIGALRM)."""

MATH_MAX_CHARS = 1000
"""Longer answers are not given to math-verify (elsewhere than in the main thread it runs
without a time limit, so its input is kept small)."""


def _for_math_verify(answer: str) -> str:
    inner = last_boxed(answer) if "\\boxed" in answer else None
    answer = (inner if inner is not None else answer).strip().strip("$").strip()
    return f"\\boxed{{{answer}}}"


def math_equal(gold: str, answer: str) -> bool:
    """Does ``answer`` equal ``gold`` as mathematics? By math-verify; False when either cannot be
    parsed, on a time-out or on any error of math-verify's."""
    if "".join(gold.split()) == "".join(answer.split()):
        return bool(gold.strip())
    if len(gold) > MATH_MAX_CHARS or len(answer) > MATH_MAX_CHARS:
        return False
    seconds = MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else 0
    try:
        from math_verify import parse, verify

        parsed_gold = parse(_for_math_verify(gold), parsing_timeout=seconds)
        parsed_answer = parse(_for_math_verify(answer), parsing_timeout=seconds)
        if not parsed_gold or not parsed_answer:
            return False
        return bool(verify(parsed_gold, parsed_answer, timeout_seconds=seconds))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # math-verify's TimeoutException is a BaseException
        log.debug("math-verify failed (%s); answer counted wrong", type(exc).__name__)
        return False


@dataclass(frozen=True)
class AnswerRule:
    """How answers of one kind are read and judged.

    ``tolerance`` (numbers): relative and absolute, ``math.isclose(answer, gold, rel_tol=t,
    abs_tol=t)``. ``low``/``high`` (integers): the range a read answer must fall in.
    """

    kind: AnswerKind
    tolerance: float = 1e-6
    low: int | None = None
    high: int | None = None

    @property
    def answer_format(self) -> str:
        return ANSWER_FORMATS[self.kind]

    def extract(self, question: Question, text: str) -> str | None:
        """The answer stated in ``text`` (a model's reply), or None."""
        match self.kind:
            case AnswerKind.LETTER:
                return letter_extractor(len(question.options) or len(LETTERS))(text)
            case AnswerKind.INTEGER:
                return integer_extractor(self.low, self.high)(text)
            case AnswerKind.NUMBER:
                return number_extractor(text)
            case AnswerKind.MATH:
                return math_extractor(text)
        return text_extractor(text)

    def check(self, question: Question, answer: str | None) -> bool:
        """Is ``answer`` (as extracted) right for ``question``? None is never right."""
        if answer is None or not answer.strip():
            return False
        gold = question.answer
        match self.kind:
            case AnswerKind.LETTER:
                letter = answer.strip().strip("()").upper()
                return letter in LETTERS[: len(question.options) or len(LETTERS)] and letter == gold.strip().upper()
            case AnswerKind.INTEGER:
                said = integer_values(answer)
                return len(said) == 1 and said <= integer_values(gold)
            case AnswerKind.NUMBER:
                said_numbers, gold_numbers = numbers_in(answer), numbers_in(gold)
                if not said_numbers or not gold_numbers:
                    return False
                tol = self.tolerance
                return math.isclose(said_numbers[-1], gold_numbers[-1], rel_tol=tol, abs_tol=tol)
            case AnswerKind.MATH:
                return math_equal(gold, answer)
        return bool(normalise_text(answer)) and normalise_text(answer) == normalise_text(gold)

    def score(self, question: Question, text: str) -> bool:
        """Extract from ``text`` and check."""
        return self.check(question, self.extract(question, text))
