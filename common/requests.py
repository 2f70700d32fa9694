"""Requests and generations: what crosses the engine contract, and how a request samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.vocabulary import MAX_NEW_TOKENS


class Sampling(BaseModel):
    """How an expert samples its answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS, description="Most new tokens per answer.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(0, description="Sampling seed; None draws a fresh one.")
    stop: tuple[str, ...] = Field((), description="Strings that end an answer early.")
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=2.0, description="Above 1 discourages repeating tokens (base models loop)."
    )


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Request(BaseModel):
    """One prompt for one model. ``question_id`` and ``benchmark`` name the benchmark item it asks,
    so a replay engine finds its record (and answers no other benchmark's item by its id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., min_length=1)
    messages: tuple[Message, ...] = Field(..., min_length=1)
    question_id: str | None = None
    benchmark: str | None = Field(
        None, min_length=1, description="The benchmark whose item question_id names; None: a question of no benchmark."
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Overrides the expert's.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Overrides the expert's.")
    seed: int | None = Field(None, description="Overrides the expert's (distinct samples of one prompt).")
    logprobs: bool = Field(False, description="Ask the engine for the generated tokens' log-probabilities.")

    def sampling(self, base: Sampling) -> Sampling:
        """The expert's sampling with this request's overrides applied."""
        changes = {
            k: v
            for k, v in (("max_tokens", self.max_tokens), ("temperature", self.temperature), ("seed", self.seed))
            if v is not None
        }
        return base.model_copy(update=changes) if changes else base

    @classmethod
    def user(cls, id: str, text: str, **fields) -> Request:  # noqa: A002 - matches the field
        return cls(id=id, messages=(Message(role="user", content=text),), **fields)

    @property
    def text(self) -> str:
        """The last user message: what the request asks."""
        return next(m.content for m in reversed(self.messages) if m.role == "user")


class Generation(BaseModel):
    """One finished answer (or a failure with its reason)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    model: str
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    error_type: str | None = Field(
        None, description="The class in the error tree of what failed it (e.g. 'ReplayMiss'), when known."
    )
    answer: str | None = Field(
        None, description="The answer its source already extracted (a recording's pred): read instead of the text."
    )
    logprob: float | None = Field(
        None,
        le=0.0,
        description="Mean log-probability (natural log) per generated token of the text; None when the request "
        "did not ask (Request.logprobs) or the engine cannot give it.",
    )

    @property
    def ok(self) -> bool:
        return self.error is None

    def stated(self, extract: Callable[[str], str | None] | None) -> str | None:
        """The answer it states: its source's own (``answer``), else ``extract`` run on its text;
        None when it failed."""
        if not self.ok:
            return None
        return stated_answer(self.answer, self.text, extract)


def stated_answer(recorded: str | None, text: str, extract: Callable[[str], str | None] | None) -> str | None:
    """The one rule for what an answer states: what its source recorded (a recording's pred),
    else what ``extract`` reads in its text."""
    if recorded is not None:
        return recorded
    return extract(text) if extract is not None and text else None
