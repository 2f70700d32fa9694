"""A client for ``coe serve``: the SDK's ``answer`` and ``answer_batch`` over HTTP.

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
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from common.errors import BadInput, CoeError, EndpointError, EngineTimeout, Overloaded, RateLimited, field_path
from common.query import Query
from orchestrator.pipeline.inputs import as_query
from orchestrator.pipeline.trace import Answer
from orchestrator.remote.errors import error_class
from orchestrator.remote.wire import (
    Aggregation,
    AnswerBatchRequest,
    AnswerBatchResponse,
    AnswerRequest,
    BatchItem,
    ModelList,
)

_Body = TypeVar("_Body", bound=BaseModel)
_NO_LIMIT = sys.maxsize  # the service knows its own question limit and says so (413)
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
        self.base_url = _root(base_url)
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
        body = _answer_body(question, options, id, policy, k, max_tokens, aggregation)
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
        body = _batch_body(questions, policy, k, max_tokens, aggregation)
        return _answers(self._send("POST", "/v1/answer/batch", body), len(body["questions"]))

    def models(self) -> list[str]:
        """The model ids the service offers (``GET /v1/models``)."""
        return [card.id for card in _read(self._send("GET", "/v1/models"), ModelList).data]

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
        body = _answer_body(question, options, id, policy, k, max_tokens, aggregation)
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
        body = _batch_body(questions, policy, k, max_tokens, aggregation)
        return _answers(await self._asend("POST", "/v1/answer/batch", body), len(body["questions"]))

    async def amodels(self) -> list[str]:
        """``models``, awaited."""
        return [card.id for card in _read(await self._asend("GET", "/v1/models"), ModelList).data]

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


# -- bodies sent --------------------------------------------------------------------------------


def _root(base_url: object) -> str:
    """The service's root URL, checked: http(s), a host, no ``/v1`` at the end."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise BadInput("base_url must be the service's URL, e.g. http://localhost:8000")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise BadInput(f"base_url {base_url!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise BadInput(f"base_url must start with http:// or https:// and name a host, got {base_url!r}")
    root = str(url).rstrip("/")
    return root.removesuffix("/v1")


def _item(question: object, options: object, id: object, field: str) -> dict[str, Any]:
    """One question as the wire takes it, checked as the SDK checks it."""
    if isinstance(question, Query) and (options is not None or id is not None):
        raise BadInput(f"{field}: give options and id inside the Query, not beside it")
    query = as_query(question, _NO_LIMIT, options=options, field=field)
    item: dict[str, Any] = {"question": query.text, "options": list(query.options) or None}
    item["id"] = query.id if isinstance(question, Query) else id
    return item


def _answer_body(
    question: object, options: object, id: object, policy: object, k: object, max_tokens: object, aggregation: object
) -> dict[str, Any]:
    fields = _item(question, options, id, "question")
    request = _checked(AnswerRequest, {**fields, **_ask(policy, k, max_tokens, aggregation)})
    return request.model_dump(mode="json", exclude_none=True)


def _batch_body(
    questions: object, policy: object, k: object, max_tokens: object, aggregation: object
) -> dict[str, Any]:
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        raise BadInput("a batch takes a list of questions")
    if not questions:
        raise BadInput("a batch needs at least one question")
    items: list[str | BatchItem] = []
    for i, question in enumerate(questions):
        field = f"questions[{i}]"
        item = _item(question, None, None, field)
        if isinstance(question, Query):
            items.append(_checked(BatchItem, item, field))
        else:
            items.append(item["question"])
    request = _checked(AnswerBatchRequest, {"questions": items, **_ask(policy, k, max_tokens, aggregation)})
    return request.model_dump(mode="json", exclude_none=True)


def _ask(policy: object, k: object, max_tokens: object, aggregation: object) -> dict[str, Any]:
    if isinstance(k, bool) or isinstance(max_tokens, bool):  # pydantic would take True for 1
        raise BadInput("k and max_tokens must be integers, not True or False")
    return {"policy": policy, "k": k, "max_tokens": max_tokens, "aggregation": aggregation}


def _checked(model: type[_Body], fields: dict[str, Any], where: str = "") -> _Body:
    """The wire body the service will accept, or BadInput naming the first field it would refuse."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(part for part in (where, field_path(first["loc"])) if part)
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise BadInput(f"{name or 'request'}: {first['msg']}, got {shown}") from exc


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
