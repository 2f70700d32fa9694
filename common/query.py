"""What a user asks: a question, its answer options if it is multiple-choice, and an id.

The SDK, the CLI and (later) the service take a ``Query``; a benchmark item
(``eval.Question``) is a query that also knows its benchmark, gold answer and category.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_OPTIONS = 10
"""Options are lettered A-J."""

MAX_NAME_CHARS = 100
"""Longest name (policy, model, benchmark, split) a request may give."""


def query_id(text: str, options: tuple[str, ...] = ()) -> str:
    """A stable id for a query without one: a digest of its text and options."""
    return "q-" + hashlib.sha256("\n".join((text, *options)).encode()).hexdigest()[:16]


class Query(BaseModel):
    """One question to answer. Without an ``id`` one is made from the text and options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field("", description="Unique within a batch; a digest of text and options when empty.")
    text: str = Field(..., min_length=1, description="The question.")
    options: tuple[str, ...] = Field((), max_length=MAX_OPTIONS, description="Choices, lettered A, B, ...")

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and not raw.get("id") and isinstance(raw.get("text"), str):
            options = raw.get("options") or ()
            if isinstance(options, list | tuple) and all(isinstance(o, str) for o in options):
                raw = {**raw, "id": query_id(raw["text"], tuple(options))}
        return raw
