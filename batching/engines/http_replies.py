"""What the HTTP engine (``batching.engines.http``) reads off an OpenAI-compatible server's
replies: error texts, JSON bodies, server-sent event chunks and their log-probabilities."""

from __future__ import annotations

import itertools
import json
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import httpx

from common.errors import EndpointError
from common.requests import Generation


class StreamFailed(Exception):
    """A stream the server had accepted broke off or reported an error."""


def describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}"


def preview(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return repr(text[:120]) if text else "an empty body"


def json_body(response: httpx.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise EndpointError(f"{where} answered something that is not JSON: {preview(response)}") from exc


def error_text(response: httpx.Response) -> str:
    """The server's own error message if it sent one in JSON, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return preview(response)
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error:
            return " ".join(str(error).split())[:300]
    return preview(response)


def announce(events: queue.SimpleQueue[tuple[int, str | None]], index: int) -> Callable[[Future[Generation]], None]:
    """A future's done callback that queues (index, None): the request is finished."""
    return lambda _future: events.put((index, None))


def chunks(response: httpx.Response, where: str) -> Iterator[dict[str, Any] | None]:
    """The JSON objects of a server-sent event stream as they arrive, None for ``[DONE]``.

    An event's ``data:`` lines joined by newlines are its data; comments and other fields are
    skipped (OpenAI-style streams only use ``data:``)."""
    data: list[str] = []
    for line in itertools.chain(response.iter_lines(), [""]):  # a last blank line ends an open event
        if line:
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
            continue
        if not data:
            continue
        event, data = "\n".join(data), []
        if event.strip() == "[DONE]":
            yield None
            return
        try:
            chunk = json.loads(event)
        except ValueError as exc:
            raise StreamFailed(f"{where} streamed something that is not JSON: {event[:120]!r}") from exc
        if not isinstance(chunk, dict):
            raise StreamFailed(f"{where} streamed JSON that is not an object: {event[:120]!r}")
        yield chunk


def token_logprobs(choice: dict[str, Any], chat: bool) -> list[float | None]:
    """The per-token log-probabilities a choice (of a reply or a streamed chunk) carries: chat's
    ``logprobs.content[*].logprob``, completions' ``logprobs.token_logprobs``; [] if none. What is
    not a number stays in as None, so ``mean_logprob`` gives None rather than a partial mean."""
    block = choice.get("logprobs")
    if not isinstance(block, dict):
        return []
    items = block.get("content" if chat else "token_logprobs")
    if items is None:
        return []
    if not isinstance(items, list):
        return [None]
    if chat:
        items = [item.get("logprob") if isinstance(item, dict) else None for item in items]
    return [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in items]


def read_chunk(
    chunk: dict[str, Any], chat: bool, where: str
) -> tuple[str, str | None, tuple[int, int] | None, list[float | None]]:
    """(text, finish reason, (prompt, completion) tokens, per-token log-probabilities) of one
    streamed chunk; an error the server reported mid-stream is StreamFailed."""
    error = chunk.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise StreamFailed(f"{where} reported an error mid-stream: {' '.join(str(message).split())[:300]}")
    try:
        text, finish, logprobs = "", None, []
        choices = chunk.get("choices") or []
        if choices:
            choice = choices[0]
            piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if piece is not None and not isinstance(piece, str):
                raise TypeError(f"text is {type(piece).__name__}")
            text, finish, logprobs = piece or "", choice.get("finish_reason"), token_logprobs(choice, chat)
        usage = chunk.get("usage")
        counts = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)) if usage else None
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise StreamFailed(
            f"malformed chunk from {where} ({type(exc).__name__}: {exc}): {json.dumps(chunk)[:120]!r}"
        ) from exc
    return text, finish, counts, logprobs
