"""The one judge of answers: whether an answer is right, and whether two answers are the same.

Every place that compares answers asks a ``Judge``: the votes (majority, weighted, the
cascade's leader), the agreement checks of the adaptive and cascade policies and of the
synthesis aggregator, profile labels, calibration, evaluation scores, jobs and the service.
A judge knows one answer kind and, for multiple choice, the question's options; nothing
about benchmarks.

    kind      key (canonical form)                      same / correct
    letter    "C" from "C", "(c)", "C.", or the text     keys equal
              of option C
    integer   "25" from "025", "2,125" -> "2125"         keys equal (gold may list several)
    number    "7425" from "7425.00", "$7,425", "7,425"   within a tolerance
    math      a number when it is one ("\\frac{1}{2}"   keys equal, else math-verify
              -> "0.5"), else the LaTeX, spacing removed   (sympy underneath)
    text      casefolded, articles, spacing and           keys equal; numbers within a
              punctuation dropped; a number when it is    tolerance
              one ("$7,425.00" -> "7425")

A blank or unreadable answer has no key: it abstains from every vote and is never right.
"""

from __future__ import annotations

import logging
import math
import re
import string
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from common.numbers import format_number, last_boxed, numbers_in, plain_number

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"
"""Option letters, in order (multiple choice has at most ten options)."""


class AnswerKind(StrEnum):
    LETTER = "letter"
    INTEGER = "integer"
    NUMBER = "number"
    MATH = "math"
    TEXT = "text"


_PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014"
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise_text(text: str) -> str:
    """Casefolded, articles dropped (unless nothing else is left: "A" stays "a"), spacing
    collapsed, punctuation around it stripped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    for candidate in (_ARTICLES.sub(" ", folded), folded):
        cleaned = " ".join(candidate.strip().strip(_PUNCTUATION).split()).strip(_PUNCTUATION + " ")
        if cleaned:
            return cleaned
    return ""


def integer_values(text: str) -> set[int]:
    """The whole numbers written in ``text``: ``{25}`` for "025", ``{80, 81}`` for "080 or 081"."""
    return {int(value) for value in numbers_in(text) if value.is_integer()}


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


DEFAULT_TOLERANCE = 1e-12
"""Relative and absolute: float noise passes (0.1 + 0.2 == 0.3); 9,999,999.96 is not 9,999,999.97."""

_LETTER = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?(?:[.:)]|\s|$)")
_LETTER_CHARS = frozenset(LETTERS + LETTERS.lower())
_LATEX_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\s+")
_NUMBER_KEY_DIGITS = 12
"""Significant digits a numeric key keeps (finer differences are left to the tolerance)."""


def number_key(value: float) -> str:
    """The canonical text of a number: ``7425.0`` -> ``7425``, ``0.1 + 0.2`` -> ``0.3``."""
    return format_number(float(f"{value:.{_NUMBER_KEY_DIGITS}g}"))


@dataclass(frozen=True)
class Judge:
    """Reads and compares answers of one kind (and, for multiple choice, one question's options).

    ``tolerance`` (numbers, also numbers given as text or math): relative and absolute,
    ``math.isclose(a, b, rel_tol=t, abs_tol=t)``. ``options``: the question's option texts, so
    that an answer naming an option's text counts as its letter.
    """

    kind: AnswerKind = AnswerKind.TEXT
    options: tuple[str, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE

    # -- one answer ----------------------------------------------------------------------------
    def key(self, answer: str | None) -> str | None:
        """The answer's canonical form, or None when it is blank or unreadable (it abstains)."""
        if answer is None or not answer.strip():
            return None
        match self.kind:
            case AnswerKind.LETTER:
                return self._letter(answer)
            case AnswerKind.INTEGER:
                values = integer_values(answer)
                return str(values.pop()) if len(values) == 1 else None
            case AnswerKind.NUMBER:
                value = self._number(answer)
                return number_key(value) if value is not None else None
            case AnswerKind.MATH:
                inner = last_boxed(answer)
                written = (inner if inner is not None else answer).strip().strip("$").strip()
                value = plain_number(written)
                if value is not None:
                    return number_key(value)
                written = _LATEX_NOISE.sub("", written.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))
                return written or None
        value = plain_number(answer)
        if value is not None:
            return number_key(value)
        return normalise_text(answer) or None

    def value(self, answer: str | None) -> float | None:
        """The number an answer states, for the kinds compared as numbers (None otherwise)."""
        if answer is None or not answer.strip():
            return None
        if self.kind is AnswerKind.NUMBER:
            return self._number(answer)
        if self.kind in (AnswerKind.TEXT, AnswerKind.MATH):
            inner = last_boxed(answer) if self.kind is AnswerKind.MATH else None
            return plain_number(inner if inner is not None else answer)
        return None

    # -- two answers ---------------------------------------------------------------------------
    def same(self, a: str | None, b: str | None) -> bool:
        """Do ``a`` and ``b`` state the same answer? Never when either is blank or unreadable."""
        key_a, key_b = self.key(a), self.key(b)
        if key_a is None or key_b is None:
            return False
        if key_a == key_b:
            return True
        if self.kind is AnswerKind.MATH and a is not None and b is not None:
            return math_equal(a, b)
        value_a, value_b = self.value(a), self.value(b)
        if value_a is not None and value_b is not None:
            return math.isclose(value_a, value_b, rel_tol=self.tolerance, abs_tol=self.tolerance)
        return False

    def correct(self, answer: str | None, gold: str) -> bool:
        """Is ``answer`` right, ``gold`` being the item's gold answer? An integer gold may name
        several accepted values ("080 or 081")."""
        if self.kind is AnswerKind.INTEGER:
            key = self.key(answer)
            return key is not None and int(key) in integer_values(gold)
        return self.same(answer, gold)

    def keys(self, answers: Sequence[str | None]) -> list[str | None]:
        """Each answer's key, answers that are the same (``same``) sharing the first one's key:
        what a vote counts. Blank and unreadable answers get None."""
        keys = [self.key(a) for a in answers]
        if self.kind in (AnswerKind.LETTER, AnswerKind.INTEGER):
            return keys  # keys are the equivalence itself
        seen: list[tuple[str, str]] = []  # (key, the answer that first had it)
        out: list[str | None] = []
        for answer, key in zip(answers, keys, strict=True):
            if key is None or answer is None:
                out.append(None)
                continue
            for first_key, first in seen:
                if first_key == key or self.same(first, answer):
                    key = first_key
                    break
            else:
                seen.append((key, answer))
            out.append(key)
        return out

    # -- helpers -------------------------------------------------------------------------------
    def _letter(self, answer: str) -> str | None:
        letters = LETTERS[: len(self.options) or len(LETTERS)]
        text = answer.strip().strip("*").strip()
        if len(text) == 1 and text in _LETTER_CHARS and text.upper() in letters:
            return text.upper()  # the common case, a bare letter: what the match below finds
        found = _LETTER.match(text)
        if found and found.group(1).upper() in letters:
            rest = text[found.end() :].strip()
            if not rest or (self.options and _is_option(rest, self.options[letters.index(found.group(1).upper())])):
                return found.group(1).upper()
        said = normalise_text(text)
        for letter, option in zip(letters, self.options):
            if said and said == normalise_text(option):
                return letter
        return None

    def _number(self, answer: str) -> float | None:
        value = plain_number(answer)
        if value is not None:
            return value
        values = numbers_in(answer)
        return values[-1] if values else None


def plurality(keys: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """The one vote-counting rule: the key most answers have (None abstains); a tie goes to the
    larger summed weight of its supporters (their competence), then to the smaller key, so the
    result never depends on the answers' order. None when every answer abstains."""
    counts: dict[str, int] = {}
    summed: dict[str, float] = {}
    for key, weight in zip(keys, weights, strict=True):
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
            summed[key] = summed.get(key, 0.0) + weight
    if not counts:
        return None
    return max(sorted(counts), key=lambda k: (counts[k], summed[k]))


def _is_option(text: str, option: str) -> bool:
    return normalise_text(text) == normalise_text(option)


__all__ = [
    "DEFAULT_TOLERANCE",
    "LETTERS",
    "AnswerKind",
    "Judge",
    "integer_values",
    "math_equal",
    "normalise_text",
    "number_key",
    "plurality",
]
