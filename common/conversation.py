"""Conversations: the earlier turns a question is the last turn of, and how they are cut to fit a
model's context.

A ``Conversation`` holds the turns before the question (``history``): at most one system message
first (the user's own instructions), then user and assistant messages taking turns, starting with
the user's and ending with the assistant's, so that the question, a user message, comes next. Its
``session`` names it for session affinity (None: it is recognised by its earlier turns).

Token counts here are estimates, made without a model's tokenizer (a pool mixes models served
in other processes and on other machines): ``estimate_tokens`` counts what a byte-pair tokenizer
splits apart (a word every 4 letters, each digit, each punctuation mark, each newline, a space
before a digit or a mark, each byte that is not ASCII). On 6,000 MMLU-Pro questions and recorded
answers it was at or above the count of SmolLM2's and Gemma-3's own tokenizers for all but 4 and
2 of them (at most 1.41x short), about 0.7x their counts in all (tests/real checks it), and
``fit`` keeps a margin besides (``MARGIN``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.requests import Message

PER_MESSAGE = 8
"""Tokens a chat template adds around each message (role markers, separators), at most."""

MARGIN = 0.1
"""The share of a model's context left unused by ``fit`` (the estimate may fall short)."""

_PIECE = re.compile(r"[A-Za-z]+|\d|\s+|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is, erring high (see the module's docstring)."""
    pieces = _PIECE.findall(text)
    count = 0
    for i, piece in enumerate(pieces):
        if not piece.isascii():
            count += len(piece.encode("utf-8"))
        elif piece[0].isspace():  # one space joins the word after it; before a digit or a mark it is a token
            spaces = piece.replace("\n", "")
            after = pieces[i + 1][:1] if i + 1 < len(pieces) else ""
            count += piece.count("\n") + (len(spaces) > 1 or (len(spaces) == 1 and not after.isalpha()))
        elif piece[0].isalpha():
            count += math.ceil(len(piece) / 4)
        else:
            count += 1
    return count


def message_tokens(messages: Sequence[Message]) -> int:
    """The estimated tokens of ``messages`` as a chat template writes them."""
    return sum(estimate_tokens(m.content) + PER_MESSAGE for m in messages)


class Conversation(BaseModel):
    """The turns before a question, and the session they belong to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: tuple[Message, ...] = Field(
        (),
        description="The earlier turns, oldest first: an optional system message, then user and assistant "
        "messages taking turns (user first, assistant last).",
    )
    session: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="Names the conversation for session affinity; None: it is recognised by its earlier turns.",
    )

    @model_validator(mode="after")
    def _in_order(self) -> Conversation:
        problem = order_problem([m.role for m in self.history], last_is_question=False)
        if problem is not None:
            index, why = problem
            raise ValueError(f"history[{index}]: {why}")
        return self

    @property
    def system(self) -> Message | None:
        """The user's system message, when there is one."""
        return self.history[0] if self.history and self.history[0].role == "system" else None

    @property
    def turns(self) -> tuple[Message, ...]:
        """The user and assistant messages of ``history`` (no system message)."""
        return self.history[1:] if self.system is not None else self.history

    @property
    def earlier_questions(self) -> tuple[str, ...]:
        """The user's earlier messages, oldest first: what the question is read in the context of."""
        return tuple(m.content for m in self.turns if m.role == "user")


def order_problem(roles: Sequence[str], *, last_is_question: bool = True) -> tuple[int, str] | None:
    """(index, why) of the first role out of order, or None: at most one ``system`` first, then
    ``user`` and ``assistant`` taking turns from ``user``; the last is ``user`` when
    ``last_is_question`` (a whole conversation), else ``assistant`` (the turns before a question)."""
    previous: str | None = None
    for index, role in enumerate(roles):
        if role == "system":
            if index != 0:
                return index, "a system message may only come first"
            continue
        if role not in ("user", "assistant"):
            return index, f"role {role!r} is not user, assistant or system"
        expected = "assistant" if previous == "user" else "user"
        if role != expected:
            where = "first" if previous is None else f"after a {previous} message"
            article = "an" if expected == "assistant" else "a"
            return index, f"expected {article} {expected} message {where}, got {role!r} (user and assistant take turns)"
        previous = role
    if previous is None:
        return (max(0, len(roles) - 1), "no user message to answer") if last_is_question else None
    want = "user" if last_is_question else "assistant"
    if previous != want:
        what = "the user's (the one to answer)" if last_is_question else "the assistant's"
        return len(roles) - 1, f"the last message must be {what}, got {previous!r}"
    return None


def fit(history: Sequence[Message], fixed_tokens: int, context_tokens: int | None) -> tuple[tuple[Message, ...], int]:
    """The turns of ``history`` a model whose context holds ``context_tokens`` can be shown beside
    ``fixed_tokens`` of its own (the question, its instructions, the answer it writes), and how
    many messages were cut: the oldest exchanges (a user message and the answer after it) go
    first; the system message stays. Nothing is cut when ``context_tokens`` is None."""
    history = tuple(history)
    if context_tokens is None:
        return history, 0
    budget = math.floor(context_tokens * (1 - MARGIN)) - fixed_tokens
    head = history[:1] if history and history[0].role == "system" else ()
    turns = history[len(head) :]
    budget -= message_tokens(head)
    start = 0
    while start < len(turns) and message_tokens(turns[start:]) > budget:
        start += 2  # one exchange: the user's message and the answer after it
    return head + turns[start:], min(start, len(turns))


__all__ = ["MARGIN", "PER_MESSAGE", "Conversation", "estimate_tokens", "fit", "message_tokens", "order_problem"]
