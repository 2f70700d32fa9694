"""A benchmark item and how its options are written out."""

from __future__ import annotations

from pydantic import Field

from common.query import Query

LETTERS = "ABCDEFGHIJ"


class Question(Query):
    """One benchmark item, normalised across benchmarks: a query with its gold answer."""

    benchmark: str
    answer: str
    category: str | None = None
    preamble: str = Field(
        "", description="Text shown before the question, e.g. worked examples (one string shared per category)."
    )


def format_options(options: tuple[str, ...]) -> str:
    """Options one per line, lettered: ``(A) first``."""
    return "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))


def with_options(question: Query) -> str:
    """The question followed by its lettered options (the question alone when it has none)."""
    if not question.options:
        return question.text
    return f"{question.text}\n\nOptions:\n{format_options(question.options)}"
