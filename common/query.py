"""What a user asks: a question, its answer options if it is multiple-choice, and an id.

The SDK, the CLI and the service take a ``Query``; a benchmark item (``eval.Question``) is a
query that also knows its benchmark, gold answer and category. A chat turn is a query whose
``conversation`` holds the turns before it (``common.conversation``); a plain question has none,
and is a conversation of one turn.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.conversation import Conversation

MAX_OPTIONS = 10
"""Options are lettered A-J."""

MAX_NAME_CHARS = 100
"""Longest name (policy, model, benchmark, split) a request may give."""


def query_id(text: str, options: tuple[str, ...] = (), history: tuple[tuple[str, str], ...] = ()) -> str:
    """A stable id for a query without one: a digest of its text and options, and of the earlier
    turns of its conversation, (role, content) each, when it has any (a plain question's id is
    the digest of its text and options alone)."""
    parts = [text, *options]
    if history:
        parts += ["\x00history", *(f"{role}\x00{content}" for role, content in history)]
    return "q-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Query(BaseModel):
    """One question to answer. Without an ``id`` one is made from the text and options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field("", description="Unique within a batch; a digest of text and options when empty.")
    text: str = Field(..., min_length=1, description="The question.")
    options: tuple[str, ...] = Field((), max_length=MAX_OPTIONS, description="Choices, lettered A, B, ...")
    conversation: Conversation | None = Field(
        None, description="A chat turn: the turns before it and its session; None: a plain question."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and not raw.get("id") and isinstance(raw.get("text"), str):
            options = raw.get("options") or ()
            history = _history(raw.get("conversation"))
            if isinstance(options, list | tuple) and all(isinstance(o, str) for o in options) and history is not None:
                raw = {**raw, "id": query_id(raw["text"], tuple(options), history)}
        return raw


def _history(conversation: object) -> tuple[tuple[str, str], ...] | None:
    """(role, content) of each earlier turn of a conversation given as a model or a dict; None
    when it cannot be read (validation then says why)."""
    if conversation is None:
        return ()
    if isinstance(conversation, Conversation):
        return tuple((m.role, m.content) for m in conversation.history)
    if not isinstance(conversation, dict):
        return None
    turns = []
    for message in conversation.get("history") or ():
        role = getattr(message, "role", None) if not isinstance(message, dict) else message.get("role")
        content = getattr(message, "content", None) if not isinstance(message, dict) else message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        turns.append((role, content))
    return tuple(turns)
