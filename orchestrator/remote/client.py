"""A client for ``coe serve``: the SDK's ``answer``, ``answer_batch`` and ``chat`` over HTTP.

    from orchestrator import Client, Query

    with Client("http://localhost:8000", api_key="my-key") as coe:
        answer = coe.answer("Which planet is largest?")
        print(answer.text)
        print(answer.summary())
        answers = coe.answer_batch(["Is a tomato a fruit?", Query(text="2+2?", options=("3", "4"))])

Errors come back as the classes the service caught (``BadInput``, ``Unauthorized``,
``RateLimited`` with ``retry_after``, ...), read from the service's one error table. A server
that cannot be reached raises ``EndpointError``; one that does not answer in time,
``EngineTimeout``; a reply that is not the service's JSON, ``EndpointError``.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from common.errors import (
    BadInput,
    BudgetExceeded,
    CoeError,
    EndpointError,
    EngineTimeout,
    Overloaded,
    RateLimited,
    field_path,
)
from common.query import Query
from orchestrator.pipeline.trace import Answer
from orchestrator.remote.bodies import answer_body, batch_body, chat_body, service_root
from orchestrator.remote.errors import error_class
from orchestrator.remote.wire import Aggregation as Aggregation
from orchestrator.remote.wire import AnswerBatchResponse, ModelList, UsageReport

_Body = TypeVar("_Body", bound=BaseModel)
_CONNECT_S = 10.0  # a server that does not accept a connection in this long is down


class Client:
    """Talks to one ``coe serve`` at ``base_url`` (its root; a trailing ``/v1`` is accepted).

    ``api_key`` is sent as ``Authorization: Bearer <key>``. ``timeout`` bounds each request in
    seconds (connecting takes at most 10 of them). ``transport`` / ``async_transport`` replace
    httpx's (tests pass ``httpx.MockTransport``). The httpx clients are made on first use; the
    async one belongs to the event loop that first used it. Thread-safe for the sync methods.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = service_root(base_url)
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise BadInput("api_key must be a non-empty string or None")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise BadInput(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.api_key = api_key
        self.timeout = float(timeout)
        self._transport = transport
        self._async_transport = async_transport
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r}, api_key={'***' if self.api_key else None})"

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the sync connections (the async ones need ``aclose``). The client stays usable."""
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    async def aclose(self) -> None:
        """Close every connection, sync and async. The client stays usable."""
        self.close()
        client, self._async = self._async, None
        if client is not None:
            await client.aclose()

    def _settings(self) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout, connect=min(_CONNECT_S, self.timeout))
        return {"base_url": self.base_url, "headers": headers, "timeout": timeout}

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(transport=self._transport, **self._settings())
            return self._sync

    def _aclient(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(transport=self._async_transport, **self._settings())
        return self._async

    # -- requests -----------------------------------------------------------------------------

    def answer(
        self,
        question: str | Query,
        *,
        options: Sequence[str] | None = None,
        id: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> Answer:
        """Answer one question (multiple-choice when ``options`` are given): ``POST /v1/answer``.
        Raises what the service raised, e.g. ``GenerationFailed`` when no expert answered."""
        body = answer_body(question, options, id, policy, k, max_tokens, aggregation)
        return _read(self._send("POST", "/v1/answer", body), Answer)

    def answer_batch(
        self,
        questions: Sequence[str | Query],
        *,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> list[Answer]:
        """Answer several questions together, in their order: ``POST /v1/answer/batch``.
        A question whose experts all failed comes back with ``error`` set."""
        body = batch_body(questions, policy, k, max_tokens, aggregation)
        return _answers(self._send("POST", "/v1/answer/batch", body), len(body["questions"]))

    def chat(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        session: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> Answer:
        """Answer the last user message of a conversation (``{"role", "content"}`` messages), as
        the SDK's ``chat`` does: ``POST /v1/answer`` with ``messages``; ``session`` names the
        conversation for session affinity (else the service recognises it by its earlier turns)."""
        body = chat_body(messages, session, policy, k, max_tokens, aggregation)
        return _read(self._send("POST", "/v1/answer", body), Answer)

    def models(self) -> list[str]:
        """The model ids the service offers (``GET /v1/models``)."""
        return [card.id for card in _read(self._send("GET", "/v1/models"), ModelList).data]

    def usage(self) -> UsageReport:
        """What this client's key spent this UTC day and month, and its limits (``GET /v1/usage``)."""
        return _read(self._send("GET", "/v1/usage"), UsageReport)

    def ready(self) -> bool:
        """Whether the service takes work now (``GET /readyz``): False while it says it cannot
        (503) or does not answer at all, so a caller can wait for it to start."""
        try:
            response = self._client().get("/readyz")
        except httpx.HTTPError:
            return False
        return _ready(response)

    async def aanswer(
        self,
        question: str | Query,
        *,
        options: Sequence[str] | None = None,
        id: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> Answer:
        """``answer``, awaited."""
        body = answer_body(question, options, id, policy, k, max_tokens, aggregation)
        return _read(await self._asend("POST", "/v1/answer", body), Answer)

    async def aanswer_batch(
        self,
        questions: Sequence[str | Query],
        *,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> list[Answer]:
        """``answer_batch``, awaited."""
        body = batch_body(questions, policy, k, max_tokens, aggregation)
        return _answers(await self._asend("POST", "/v1/answer/batch", body), len(body["questions"]))

    async def achat(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        session: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        aggregation: Aggregation = "synthesis",
    ) -> Answer:
        """``chat``, awaited."""
        body = chat_body(messages, session, policy, k, max_tokens, aggregation)
        return _read(await self._asend("POST", "/v1/answer", body), Answer)

    async def amodels(self) -> list[str]:
        """``models``, awaited."""
        return [card.id for card in _read(await self._asend("GET", "/v1/models"), ModelList).data]

    async def ausage(self) -> UsageReport:
        """``usage``, awaited."""
        return _read(await self._asend("GET", "/v1/usage"), UsageReport)

    async def aready(self) -> bool:
        """``ready``, awaited."""
        try:
            response = await self._aclient().get("/readyz")
        except httpx.HTTPError:
            return False
        return _ready(response)

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self._client().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, method, self.base_url + path, self.timeout) from exc

    async def _asend(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._aclient().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, method, self.base_url + path, self.timeout) from exc


# -- replies read -------------------------------------------------------------------------------


def _read(response: httpx.Response, model: type[_Body]) -> _Body:
    """A 200 reply's body as ``model``; anything else raised as the service's error."""
    if response.status_code != 200:
        raise _error(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = field_path(first["loc"])
        raise EndpointError(
            f"{response.request.url} answered HTTP 200 with a body that is not {model.__name__} JSON"
            f" ({where + ': ' if where else ''}{first['msg']})"
        ) from exc


def _answers(response: httpx.Response, asked: int) -> list[Answer]:
    answers = _read(response, AnswerBatchResponse).answers
    if len(answers) != asked:
        raise EndpointError(f"{response.request.url} answered {len(answers)} answers to {asked} questions")
    return answers


def _ready(response: httpx.Response) -> bool:
    if response.status_code == 200:
        return True
    if response.status_code == 503:
        return False
    raise _error(response)


def _error(response: httpx.Response) -> CoeError:
    """The error a non-200 reply stands for: the service's class when its body says, else EndpointError."""
    try:
        body = response.json()
        error = body["error"]
        kind, message = error["type"], error["message"]
        if not isinstance(kind, str) or not isinstance(message, str):
            raise TypeError("type and message must be strings")
    except (ValueError, TypeError, KeyError):
        text = " ".join(response.text.split())
        text = text if len(text) <= 200 else text[:197] + "..."
        return EndpointError(
            f"{response.request.url} answered HTTP {response.status_code} {response.reason_phrase}: {text or '(empty)'}"
        )
    cls = error_class(kind)
    if issubclass(cls, BudgetExceeded):
        return cls(message, retry_after=_retry_after(response.headers.get("Retry-After")), param=error.get("param"))
    if issubclass(cls, (RateLimited, Overloaded)):
        return cls(message, retry_after=_retry_after(response.headers.get("Retry-After")))
    return cls(message)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


def _unreachable(exc: httpx.HTTPError, method: str, url: str, timeout: float) -> CoeError:
    """A request that got no reply: EngineTimeout when the server was too slow, else EndpointError."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return EngineTimeout(f"{method} {url} got no answer within {timeout:g}s ({type(exc).__name__})")
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return EndpointError(f"cannot reach {url} ({method}): {detail}")


__all__ = ["Client"]
