"""What crosses the wire: the service's request and response bodies (pydantic, no heavy imports).

The SDK's ``Client`` sends these bodies and reads ``orchestrator.pipeline.trace.Answer`` back, so the
service and the client agree on one definition. OpenAI-compatible bodies accept the fields the
``openai`` client sends and ignore those that do not apply; the fields we use are checked.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.query import MAX_NAME_CHARS, MAX_OPTIONS
from common.vocabulary import Aggregation
from orchestrator.pipeline.trace import Answer, Trace

"""How a question's expert answers become one: the aggregator model writes it, or a vote."""


class AskOptions(BaseModel):
    """How to answer: the same fields for one question and for a batch."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_CHARS, description="Routing policy; the service's default when absent."
    )
    k: int | None = Field(None, ge=1, le=64, description="Experts per question for policies that take k.")
    max_tokens: int | None = Field(None, ge=1, le=8192, description="Most tokens the final answer may have.")
    aggregation: Aggregation = Field("synthesis", description="Aggregator model or majority vote.")


class ChatMessage(BaseModel):
    """One message as OpenAI's chat sends it; roles, content parts and tool calls are checked by
    ``orchestrator.pipeline.turns`` (which names the field at fault)."""

    model_config = ConfigDict(extra="ignore")

    role: str = Field(..., min_length=1, max_length=MAX_NAME_CHARS)
    content: str | list[dict[str, object]] | None = None
    tool_calls: list[dict[str, object]] | None = None
    function_call: dict[str, object] | None = None


class AnswerRequest(AskOptions):
    """``POST /v1/answer``: one question, multiple-choice when ``options`` are given; or the last
    user message of a conversation (``messages``, OpenAI's shape), instead of ``question``."""

    question: str | None = Field(None, min_length=1, description="The question (or give messages).")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, description="A conversation whose last user message is answered (or give question)."
    )
    session: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="Names the conversation of messages for session affinity (else its earlier turns do).",
    )
    options: list[str] | None = Field(None, max_length=MAX_OPTIONS, description="Choices, lettered A, B, ...")
    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The question's id (replay experts find a question by its text, else by this id).",
    )


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., min_length=1)
    options: list[str] | None = Field(None, max_length=MAX_OPTIONS)
    id: str | None = Field(None, min_length=1, max_length=200)


class AnswerBatchRequest(AskOptions):
    """``POST /v1/answer/batch``: several questions answered together (each model loaded once)."""

    questions: list[str | BatchItem] = Field(..., min_length=1, description="Plain questions or items with options.")


class AnswerBatchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: list[Answer]


class ErrorBody(BaseModel):
    """Every error's body, shaped as OpenAI's so its client reads it: ``{"error": {...}}``."""

    message: str
    type: str = Field(..., description="The kind of error, from the service's one table.")
    param: str | None = Field(None, description="The field or limit at fault, when there is one.")
    code: str | None = None
    resets_at: str | None = Field(
        None, description="When a spent budget comes back (ISO 8601, UTC): budget_exceeded errors only."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


# -- OpenAI-compatible ------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: ``model`` is ``POOL`` or ``POOL/POLICY``; the last user
    message is the question, asked in the context of the messages before it. ``user`` names the
    conversation for session affinity (a session header does too). Tools, function calls and
    response formats other than text are refused (``Unsupported``)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., min_length=1, max_length=2 * MAX_NAME_CHARS + 1, description="POOL or POOL/POLICY.")
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    n: int = Field(1, ge=1, le=1, description="One answer per request.")
    user: str | None = Field(None, max_length=300, description="The end user: names the conversation (affinity).")
    tools: list[dict[str, object]] | None = None
    tool_choice: str | dict[str, object] | None = None
    functions: list[dict[str, object]] | None = None
    function_call: str | dict[str, object] | None = None
    response_format: dict[str, object] | None = None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    trace: Trace = Field(..., description="Extension: everything the answer went through.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "symbolic-coe"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- usage ------------------------------------------------------------------------------------


class UsageWindow(BaseModel):
    """What a key spent in one UTC day or month."""

    period: Literal["day", "month"]
    start: str = Field(..., description="When the window began (ISO 8601, UTC).")
    resets_at: str = Field(..., description="When it ends and its budgets come back (ISO 8601, UTC).")
    requests: int
    tokens_in: int
    tokens_out: int
    tokens: int
    cost: float = Field(..., description="In the pool's unit (what trace.cost counts).")


class UsageReport(BaseModel):
    """``GET /v1/usage``: the calling key's own use (never another key's) and its limits."""

    key: str = Field(..., description="The key's id: the first hex digits of its SHA-256, never the key.")
    limits: dict[str, float] = Field(..., description="The key's limits (tokens_per_day, cost_per_month, ...).")
    windows: list[UsageWindow]
