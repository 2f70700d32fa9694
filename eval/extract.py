"""Answer extraction: ordered steps that each try one pattern and fall back to the next.

A step never raises; when nothing matches the result is ``None`` (counted as wrong).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from common.text import strip_thinking

Extractor = Callable[[str], str | None]


def _letters(n: int) -> str:
    return "ABCDEFGHIJ"[:n]


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


_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_INT = re.compile(r"-?\d[\d,]*")


def integer_extractor(low: int = 0, high: int = 999) -> Extractor:
    """Find an integer answer: the last \\boxed{}, else 'answer is N', else the last integer."""

    def in_range(raw: str) -> str | None:
        digits = raw.replace(",", "").strip()
        try:
            value = int(digits)
        except ValueError:
            return None
        return str(value) if low <= value <= high else None

    def extract(text: str) -> str | None:
        if not text:
            return None
        text = strip_thinking(text)
        for boxed in reversed(_BOXED.findall(text)):
            numbers = _INT.findall(boxed)
            if numbers and (value := in_range(numbers[-1])) is not None:
                return value
        said = re.findall(r"answer is:?\s*\$?\s*(-?\d[\d,]*)", text, re.IGNORECASE)
        if said and (value := in_range(said[-1])) is not None:
            return value
        numbers = _INT.findall(text)
        return in_range(numbers[-1]) if numbers else None

    return extract


_FINAL = re.compile(r"final answer\s*[:\-]\s*(.+)", re.IGNORECASE)


def final_line_extractor(text: str) -> str | None:
    """For free-form questions: the text after the last 'Final answer:', else None."""
    if not text:
        return None
    found = _FINAL.findall(strip_thinking(text))
    answer = found[-1].strip().strip("*").strip() if found else ""
    return answer or None
