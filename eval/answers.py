"""Answer kinds: how an answer is read out of a reply (extraction) and judged against the
gold answer (checking).

    letter   an option letter A-J among the question's options     "The answer is (C)"
    integer  a whole number; "025" is 25, "2,125" is 2125           AIME
    number   any number, currency and units ignored, within a tolerance ("$18.00" == 18)
    math     a LaTeX expression, compared by math-verify ("\\frac{1}{2}" == 0.5)
    text     a short text, compared after normalising case, spacing, punctuation, articles

Extraction returns ``None`` when nothing is found; checking is the one judge's
(``common.answers.Judge``) and never raises (an unreadable answer or gold is simply not right).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.answers import DEFAULT_TOLERANCE, AnswerKind, Judge, integer_values, math_equal, normalise_text
from eval.extract import (
    integer_extractor,
    letter_extractor,
    math_extractor,
    number_extractor,
    text_extractor,
)
from eval.question import LETTERS, Question

ANSWER_FORMATS: dict[AnswerKind, str] = {
    AnswerKind.LETTER: 'End with the line "The answer is (X)", X being the letter of the chosen option.',
    AnswerKind.INTEGER: "End with the final integer answer in \\boxed{}.",
    AnswerKind.NUMBER: 'End with the line "The answer is N", N being a number.',
    AnswerKind.MATH: "End with the final answer in \\boxed{}.",
    AnswerKind.TEXT: 'End with the line "The answer is X", X being the short answer.',
}
"""The instruction, per kind, that tells a model (or the aggregator) how to state its answer."""


@dataclass(frozen=True)
class AnswerRule:
    """How answers of one kind are read and judged.

    ``tolerance`` (numbers): relative and absolute, ``math.isclose(answer, gold, rel_tol=t,
    abs_tol=t)``. ``low``/``high`` (integers): the range a read answer must fall in.
    """

    kind: AnswerKind
    tolerance: float = DEFAULT_TOLERANCE
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

    def judge(self, question: Question) -> Judge:
        """The judge of ``question``'s answers (``common.answers``): its kind, options, tolerance."""
        return Judge(self.kind, tuple(question.options), self.tolerance)

    def check(self, question: Question, answer: str | None) -> bool:
        """Is ``answer`` (as extracted) right for ``question``? None is never right. The judge's
        rule, so every door scores alike."""
        return self.judge(question).correct(answer, question.answer)

    def score(self, question: Question, text: str) -> bool:
        """Extract from ``text`` and check."""
        return self.check(question, self.extract(question, text))


__all__ = ["ANSWER_FORMATS", "AnswerKind", "AnswerRule", "integer_values", "math_equal", "normalise_text"]
