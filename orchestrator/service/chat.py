"""The OpenAI-compatible routes: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``model`` is the pool's name (its default policy) or ``POOL/POLICY``; the last user message is
the question, and the messages before it its conversation: every expert and the aggregator read
it in their own chat template, the user's system message beside their own instructions, the
oldest turns cut to fit each model's context (``orchestrator.pipeline.conversation``). A
conversation keeps its experts from turn to turn (session affinity); it is named by the
``X-Session-Id`` header, else by ``user``, else recognised by its earlier turns. Tools, function
calls, content parts other than text and response formats other than text are refused (400,
``unsupported``); a malformed conversation is one error naming the field (``messages[2].role``).
The answer's trace rides in the extension field ``trace``. With ``stream: true`` the response
starts once the request has left the queue for its batch (a refusal is a status code, never an
event of a begun stream); the aggregator's tokens arrive as server-sent events as it writes them
(where its engine streams; otherwise, and for a majority vote, the answer comes as one piece),
then a last chunk with the finish reason and the trace, then ``data: [DONE]``. ``usage`` counts
every model's tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from common.errors import CoeError, GenerationFailed, Unsupported
from orchestrator.pipeline.trace import Answer
from orchestrator.remote.errors import INTERNAL, status_of
from orchestrator.remote.wire import (
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletion,
    ChatRequest,
    ErrorBody,
    ModelCard,
    ModelList,
    Usage,
)
from orchestrator.service.answers import ClientGone, cancel, conversation_query, wait_for
from orchestrator.service.dispatch import Ticket
from orchestrator.service.guard import caller_of
from orchestrator.service.intake import submit
from orchestrator.service.state import Service

router = APIRouter(prefix="/v1")

_STARTED = int(time.time())

_POLL_S = 0.25
"""How often a streamed request waiting for its batch looks whether its client went away."""


@router.get("/models")
async def models(request: Request) -> ModelList:
    """The virtual models: the pool (its default policy) and ``POOL/POLICY`` for every policy."""
    service: Service = request.app.state.service
    return ModelList(data=[ModelCard(id=name, created=_STARTED) for name in service.model_names()])


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> ChatCompletion | StreamingResponse:
    service: Service = request.app.state.service
    policy = service.policy_of(body.model)
    _supported(body)
    session = request.headers.get(SESSION_HEADER) or body.user or None
    query = conversation_query(service, body.messages, session, caller_of(request))
    max_tokens = body.max_completion_tokens or body.max_tokens
    asking = await run_in_threadpool(service.asking, policy, None, "synthesis", max_tokens)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()
        # the stream starts only once the request has left the queue for its batch: a refusal (a spent
        # budget, a full queue, a deadline passed while waiting, shutting down) is still a status code
        (ticket,) = await submit(
            request, service, [query], asking, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
        )
        await _until_begun(request, service, ticket)
        return StreamingResponse(
            _stream(service, ticket, pieces, body.model, completion_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    (found,) = await wait_for(request, service, await submit(request, service, [query], asking))
    if found.error:
        raise found.failure()
    return _completion(found, body.model, completion_id)


SESSION_HEADER = "X-Session-Id"
"""The header that names a conversation (before the body's ``user``)."""


def _supported(body: ChatRequest) -> None:
    """Refuse what this service does not do: tools and function calls, a response format other than text."""
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise Unsupported(f"{name}: tools are not supported (no tools are called)", param=name)
    for name in ("tool_choice", "function_call"):
        if getattr(body, name) not in (None, "none"):
            raise Unsupported(f"{name}: tools are not supported (no tools are called)", param=name)
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        raise Unsupported(f"response_format: {kind!r} is not supported; answers are text", param="response_format")


async def _until_begun(request: Request, service: Service, ticket: Ticket) -> None:
    """Wait until the ticket's batch takes it; its refusal is raised. A client that goes away
    meanwhile cancels it."""
    begun = asyncio.wrap_future(ticket.begun)
    try:
        while True:
            done, _ = await asyncio.wait({begun}, timeout=_POLL_S)
            if done:
                begun.result()
                return
            if await request.is_disconnected():
                cancel(service, [ticket])
                raise ClientGone()
    except asyncio.CancelledError:
        cancel(service, [ticket])
        raise


def _usage(answer: Answer) -> Usage:
    """The tokens this answer spent: none for an answer the semantic cache reused."""
    tokens_in, tokens_out = (0, 0) if answer.trace.reused else answer.trace.tokens
    return Usage(prompt_tokens=tokens_in, completion_tokens=tokens_out, total_tokens=tokens_in + tokens_out)


def _completion(answer: Answer, model: str, completion_id: str) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=[ChatChoice(message=ChatChoiceMessage(content=answer.text))],
        usage=_usage(answer),
        trace=answer.trace,
    )


def _chunk(completion_id: str, model: str, delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _stream(
    service: Service, ticket: Ticket, pieces: asyncio.Queue[str], model: str, completion_id: str
) -> AsyncIterator[str]:
    """The SSE events of one streamed answer. When the client goes away Starlette cancels this
    generator, and its ticket is cancelled with it."""
    done = asyncio.wrap_future(ticket.future)
    sent = ""
    getter: asyncio.Future[str] | None = None
    try:
        yield _chunk(completion_id, model, {"role": "assistant", "content": ""})
        while True:
            getter = asyncio.ensure_future(pieces.get())
            waiting: set[asyncio.Future[Any]] = {getter, done}
            finished, _ = await asyncio.wait(waiting, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                text = getter.result()
                sent += text
                yield _chunk(completion_id, model, {"content": text})
                continue
            getter.cancel()
            if done in finished:
                break
            yield ": still working\n\n"  # a comment keeps proxies from closing an idle stream
        while not pieces.empty():  # deltas that arrived with the answer
            text = pieces.get_nowait()
            sent += text
            yield _chunk(completion_id, model, {"content": text})
        try:
            answer = done.result()
            if answer.error:
                raise answer.failure()
            if not answer.text.startswith(sent):  # e.g. the aggregator failed midway and a vote stands in
                raise GenerationFailed("the streamed text is not the final answer (the aggregator failed midway)")
        except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes in it, as one event
            status, kind = status_of(exc) if isinstance(exc, CoeError) else INTERNAL
            message = service.redact(str(exc)) if isinstance(exc, CoeError) else "internal error"
            param = exc.param if isinstance(exc, CoeError) else None
            error = ErrorBody(message=message, type=kind, param=param, code=str(status))
            yield f"data: {json.dumps({'error': error.model_dump(mode='json')})}\n\n"
            yield "data: [DONE]\n\n"
            return
        if len(answer.text) > len(sent):
            yield _chunk(completion_id, model, {"content": answer.text[len(sent) :]})
        trace = answer.trace.model_dump(mode="json")
        usage = _usage(answer).model_dump()
        yield _chunk(completion_id, model, {}, "stop", usage=usage, trace=trace)
        yield "data: [DONE]\n\n"
    finally:
        if getter is not None and not getter.done():
            getter.cancel()
        if not ticket.future.done():
            cancel(service, [ticket])


__all__ = ["router"]
