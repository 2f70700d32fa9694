"""Answer extraction: ordered steps that each try one pattern and fall back to the next.

A step never raises; when nothing matches the result is ``None`` (counted as wrong). Where
several candidates match one step, the last one in the text wins (models restate answers).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from common.numbers import boxed_contents, format_number, last_boxed, numbers_in
from common.text import strip_thinking

Extractor = Callable[[str], str | None]

__all__ = [
    "Extractor",
    "boxed_contents",
    "final_line_extractor",
    "format_number",
    "integer_extractor",
    "last_boxed",
    "letter_extractor",
    "math_extractor",
    "number_extractor",
    "numbers_in",
    "said",
    "text_extractor",
]


def _letters(n: int) -> str:
    return "ABCDEFGHIJ"[:n]


@functools.lru_cache(maxsize=16)
def letter_extractor(n_options: int = 10) -> Extractor:
    """Find the chosen option letter among the first ``n_options`` letters."""
    letters = _letters(n_options)
    cls = f"[{letters}]"
    steps: Sequence[re.Pattern[str]] = (
        re.compile(rf"answer is:?\s*\(?\**\s*({cls})\b\)?", re.IGNORECASE),
        re.compile(rf"answer:\s*\(?\**\s*({cls})\b\)?", re.IGNORECASE),
        re.compile(rf"\\boxed\{{\s*\(?({cls})\)?\s*\}}"),
        re.compile(rf"(?:^|\s)\(({cls})\)"),
    )

    def extract(text: str) -> str | None:
        if not text:
            return None
        text = strip_thinking(text)
        for step in steps:
            found = step.findall(text)
            if found:
                return found[-1].upper()
        return None

    return extract


# --- numbers and \boxed{}: read by the judge too (common.numbers) ----------------------------

_SAID = (
    re.compile(r"final answer\**\s*(?:is\b\s*:?|:|-)\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"answer is\b\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"^\W*answer\**\s*:\s*([^\n]+)", re.IGNORECASE | re.MULTILINE),
)
"""Where a model says its answer in words, most explicit first: the rest of the line after each."""


def said(text: str) -> list[str]:
    """What follows each phrase that states an answer, in order of trust (final answer, answer
    is, Answer:) and, within one phrase, last first."""
    found: list[str] = []
    for pattern in _SAID:
        found += reversed([rest.strip() for rest in pattern.findall(text) if rest.strip()])
    return found


def integer_extractor(low: int | None = 0, high: int | None = 999) -> Extractor:
    """Find an integer answer within [low, high]: the last \\boxed{} holding one, else the last
    'answer is N', else the last number in the text ("2,125" reads 2125, "025" reads 25)."""

    def fits(values: list[float]) -> str | None:
        for value in values:
            if value.is_integer() and (low is None or value >= low) and (high is None or value <= high):
                return str(int(value))
        return None

    def extract(text: str) -> str | None:
        if not text:
            return None
        text = strip_thinking(text)
        for boxed in reversed(boxed_contents(text)):
            if (found := fits(numbers_in(boxed)[-1:])) is not None:
                return found
        for rest in said(text):
            if (found := fits(numbers_in(rest)[:1])) is not None:
                return found
        return fits(numbers_in(text)[-1:])

    return extract


def number_extractor(text: str) -> str | None:
    """A number answer, written plainly (``$18.00`` -> ``18``): the last \\boxed{} holding a
    number, else the first number after the last 'answer is', else the last number."""
    if not text:
        return None
    text = strip_thinking(text)
    for boxed in reversed(boxed_contents(text)):
        if values := numbers_in(boxed):
            return format_number(values[0])
    for rest in said(text):
        if values := numbers_in(rest):
            return format_number(values[0])
    values = numbers_in(text)
    return format_number(values[-1]) if values else None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip()
    return answer


def math_extractor(text: str) -> str | None:
    """A math answer as written (LaTeX): the last \\boxed{}, else what follows the last
    'final answer:' / 'answer is' on its line."""
    if not text:
        return None
    text = strip_thinking(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean(boxed)
    stated = said(text)
    return (_clean(stated[0]) or None) if stated else None


_TEXT_BOX = re.compile(r"^\\text\{(.*)\}$", re.DOTALL)
BARE_ANSWER_CHARS = 200
"""A reply of one line no longer than this is taken as the answer itself."""


def text_extractor(text: str) -> str | None:
    """A short free-text answer: after the last 'final answer:' / 'answer is', else the last
    \\boxed{}, else the whole reply when it is one short line."""
    if not text:
        return None
    text = strip_thinking(text)
    stated = said(text)
    if stated:
        return _clean(stated[0]) or None
    boxed = last_boxed(text)
    if boxed is not None:
        inner = _TEXT_BOX.match(boxed)
        return _clean(inner.group(1) if inner else boxed) or None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) <= BARE_ANSWER_CHARS:
        return _clean(lines[0]) or None
    return None


_FINAL = re.compile(r"final answer\s*[:\-]\s*(.+)", re.IGNORECASE)


def final_line_extractor(text: str) -> str | None:
    """For free-form questions: the text after the last 'Final answer:', else None."""
    if not text:
        return None
    found = _FINAL.findall(strip_thinking(text))
    answer = found[-1].strip().strip("*").strip() if found else ""
    return answer or None
