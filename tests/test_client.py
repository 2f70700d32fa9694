"""orchestrator.Client against httpx.MockTransport servers, sync and async: the bodies and
headers it sends, the answers it reads, and every error type of the service's table raised
back as its class. Bad input is a table: tests/data/client_bad_input.toml."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import orchestrator
from aggregators import AggregationResult, ExpertAnswer
from common.errors import BadInput, CoeError, EndpointError, EngineTimeout, RateLimited
from common.query import Query
from orchestrator import Answer, Client, Trace
from orchestrator.remote.errors import ERROR_TABLE, INTERNAL, INVALID_JSON
from orchestrator.remote.wire import ErrorBody, ErrorResponse
from router import RouteDecision

BASE = "http://coe.test"
TABLE = tomllib.loads((Path(__file__).parent / "data" / "client_bad_input.toml").read_text(encoding="utf-8"))
MODES = ["sync", "async"]


def make_answer(question_id: str = "q-1", text: str = "Jupiter") -> Answer:
    expert = ExpertAnswer(expert="alpha", text="It is Jupiter.", choice="Jupiter", tokens_in=9, tokens_out=4)
    route = RouteDecision(
        question_id=question_id, skills={"astronomy": 1.0}, experts=[{"expert": "alpha", "score": 0.9}], confidence=1.0,
        policy="topk",
    )  # fmt: skip
    aggregation = AggregationResult(method="majority", text=text, choice=text, inputs=("alpha",), confidence=1.0)
    trace = Trace(question_id=question_id, pool="tiny", route=route, experts=(expert,), aggregator="alpha",
                  aggregation=aggregation)  # fmt: skip
    return Answer(question_id=question_id, text=text, choice=text, trace=trace)


def error_reply(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=None, code=None))
    return httpx.Response(status, json=body.model_dump(mode="json"), headers=headers)


class Server:
    """A scripted ``coe serve``: records each request; ``reply`` answers it (default: an Answer
    per question asked)."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.reply is not None:
            return self.reply(request)
        if request.url.path == "/v1/answer":
            return httpx.Response(200, json=make_answer().model_dump(mode="json"))
        if request.url.path == "/v1/answer/batch":
            count = len(json.loads(request.content)["questions"])
            answers = [make_answer(f"q-{i}", f"answer {i}").model_dump(mode="json") for i in range(count)]
            return httpx.Response(200, json={"answers": answers})
        if request.url.path == "/v1/models":
            cards = [
                {"id": name, "object": "model", "created": 0, "owned_by": "symbolic-coe"}
                for name in ("tiny", "tiny/topk")
            ]
            return httpx.Response(200, json={"object": "list", "data": cards})
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        return httpx.Response(404, json={"detail": "Not Found"})

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def client_for(server: Callable[[httpx.Request], httpx.Response], api_key: str | None = "s3cret") -> Client:
    transport = httpx.MockTransport(server)
    return Client(BASE, api_key, transport=transport, async_transport=transport)


def call(mode: str, client: Client, method: str, *args: Any, **kwargs: Any) -> Any:
    """``client.<method>(...)`` in sync mode, ``await client.a<method>(...)`` in its own loop otherwise."""
    if mode == "sync":
        with client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with client:
            return await getattr(client, "a" + method)(*args, **kwargs)

    return asyncio.run(run())


# -- what is sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_answer_sends_every_field_and_reads_the_answer(mode):
    server = Server()
    answer = call(
        mode, client_for(server), "answer", "  Largest planet?  ", options=("Mars", "Jupiter"), id="p-7",
        policy="topk", k=2, max_tokens=64, aggregation="majority",
    )  # fmt: skip
    request = server.requests[-1]
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/v1/answer")
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["content-type"] == "application/json"
    assert server.body == {
        "question": "Largest planet?", "options": ["Mars", "Jupiter"], "id": "p-7", "policy": "topk", "k": 2,
        "max_tokens": 64, "aggregation": "majority",
    }  # fmt: skip
    assert answer == make_answer()


@pytest.mark.parametrize("mode", MODES)
def test_answer_sends_a_query_with_its_id_and_options_and_no_key_without_one(mode):
    server = Server()
    query = Query(text="2+2?", options=("3", "4"))
    call(mode, client_for(server, api_key=None), "answer", query)
    assert "authorization" not in server.requests[-1].headers
    assert server.body == {"question": "2+2?", "options": ["3", "4"], "id": query.id, "aggregation": "synthesis"}


@pytest.mark.parametrize("mode", MODES)
def test_batch_sends_strings_and_queries_in_order(mode):
    server = Server()
    why = Query(text="Why?")
    questions = ["Is a tomato a fruit?", Query(id="mine", text="2+2?", options=("3", "4")), why]
    answers = call(mode, client_for(server), "answer_batch", questions, k=3, policy="skill")
    request = server.requests[-1]
    assert (request.method, request.url.path, request.headers["authorization"]) == (
        "POST", "/v1/answer/batch", "Bearer s3cret",
    )  # fmt: skip
    assert server.body == {
        "questions": [
            "Is a tomato a fruit?",
            {"question": "2+2?", "options": ["3", "4"], "id": "mine"},
            {"question": "Why?", "id": why.id},
        ],
        "policy": "skill",
        "k": 3,
        "aggregation": "synthesis",
    }
    assert [a.text for a in answers] == ["answer 0", "answer 1", "answer 2"]


@pytest.mark.parametrize("mode", MODES)
def test_models_and_ready(mode):
    server = Server()
    assert call(mode, client_for(server), "models") == ["tiny", "tiny/topk"]
    assert call(mode, client_for(server), "ready") is True
    assert [r.url.path for r in server.requests] == ["/v1/models", "/readyz"]
    starting = Server(lambda r: error_reply(503, "unavailable", "the service is starting"))
    assert call(mode, client_for(starting), "ready") is False
    wrong = Server(lambda r: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(EndpointError, match=r"readyz answered HTTP 404"):
        call(mode, client_for(wrong), "ready")


def test_base_url_is_the_root_and_the_key_stays_out_of_repr():
    for given in ("http://coe.test", "http://coe.test/", "http://coe.test/v1", " http://coe.test/v1/ "):
        assert Client(given).base_url == BASE
    assert Client("https://h.example/coe/").base_url == "https://h.example/coe"
    assert "s3cret" not in repr(Client(BASE, "s3cret"))
    for bad in ("", "coe.test", "ftp://coe.test", "http://", 5):
        with pytest.raises(BadInput, match="base_url"):
            Client(bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="api_key"):
        Client(BASE, "  ")
    with pytest.raises(BadInput, match="timeout"):
        Client(BASE, timeout=0)


def test_connections_are_made_on_first_use_and_closed():
    server = Server()
    client = client_for(server)
    assert client._sync is None and client._async is None and not server.requests
    client.answer("hi")
    first = client._sync
    assert first is not None and client.answer("again") and client._sync is first
    client.close()
    assert first.is_closed and client._sync is None
    assert client.models() == ["tiny", "tiny/topk"]  # usable after close, on a new connection
    client.close()


def test_client_is_public():
    assert orchestrator.Client is Client and "Client" in orchestrator.__all__


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("cls", "status", "kind"), ERROR_TABLE, ids=[kind for _, _, kind in ERROR_TABLE])
def test_every_error_type_is_raised_as_its_class(mode, cls, status, kind):
    message = f"{kind} happened: field x is wrong"
    server = Server(lambda r: error_reply(status, kind, message))
    with pytest.raises(CoeError) as caught:
        call(mode, client_for(server), "answer", "hi")
    assert type(caught.value) is cls
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("status", "kind", "cls"), [(*INVALID_JSON, BadInput), (*INTERNAL, CoeError), (500, "new_kind", CoeError)]
)
def test_types_outside_the_table(status, kind, cls):
    server = Server(lambda r: error_reply(status, kind, "something"))
    with pytest.raises(CoeError, match="^something$") as caught:
        client_for(server).answer("hi")
    assert type(caught.value) is cls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0.5", 0.5), (None, None), ("soon", None), ("-3", 0.0)],
)
def test_rate_limited_carries_retry_after(mode, header, seconds):
    headers = {} if header is None else {"Retry-After": header}
    server = Server(lambda r: error_reply(429, "rate_limited", "rate limit: 2 requests per minute per key", headers))
    with pytest.raises(RateLimited, match="rate limit: 2 requests per minute per key") as caught:
        call(mode, client_for(server), "answer_batch", ["a", "b"])
    assert caught.value.retry_after == seconds


def test_retry_after_as_an_http_date():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = Server(lambda r: error_reply(429, "rate_limited", "slow down", {"Retry-After": when}))
    with pytest.raises(RateLimited) as caught:
        client_for(server).answer("hi")
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


def test_rate_limited_pickles_with_its_retry_after():
    again = pickle.loads(pickle.dumps(RateLimited("slow down", retry_after=4.0)))
    assert (str(again), again.retry_after) == ("slow down", 4.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (502, {"text": "<html><body>Bad   Gateway</body>\n</html>"}, "HTTP 502 Bad Gateway: <html><body>Bad Gateway"),
        (404, {"json": {"detail": "Not Found"}}, 'HTTP 404 Not Found: {"detail":"Not Found"}'),
        (500, {"json": {"error": "boom"}}, 'HTTP 500 Internal Server Error: {"error":"boom"}'),
        (503, {}, "HTTP 503 Service Unavailable: (empty)"),
        (200, {"text": "not json"}, "HTTP 200 with a body that is not Answer JSON (Invalid JSON"),
        (200, {"json": {"question_id": "q"}}, "HTTP 200 with a body that is not Answer JSON (text: Field required)"),
    ],
    ids=["html", "detail", "error-not-table", "empty", "200-not-json", "200-wrong-shape"],
)
def test_replies_that_are_not_the_service_raise_endpoint_error_naming_status_and_url(mode, status, content, expected):
    server = Server(lambda r: httpx.Response(status, **content))
    with pytest.raises(EndpointError) as caught:
        call(mode, client_for(server), "answer", "hi")
    assert str(caught.value).startswith(f"{BASE}/v1/answer answered {expected}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_with_the_wrong_number_of_answers(mode):
    server = Server(lambda r: httpx.Response(200, json={"answers": [make_answer().model_dump(mode="json")]}))
    with pytest.raises(EndpointError, match=r"/v1/answer/batch answered 1 answers to 2 questions"):
        call(mode, client_for(server), "answer_batch", ["a", "b"])


def failing(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def reply(request: httpx.Request) -> httpx.Response:
        raise exc

    return reply


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("exc", "cls", "expected"),
    [
        (
            httpx.ConnectError("connection refused"),
            EndpointError,
            "cannot reach http://coe.test/v1/answer (POST): connection refused",
        ),
        (httpx.ConnectTimeout("connect timed out"), EndpointError, "cannot reach http://coe.test/v1/answer (POST)"),
        (
            httpx.ReadTimeout("read timed out"),
            EngineTimeout,
            "POST http://coe.test/v1/answer got no answer within 600s (ReadTimeout)",
        ),
        (httpx.RemoteProtocolError("server disconnected"), EndpointError, "server disconnected"),
    ],
)
def test_no_reply_raises_from_the_httpx_error(mode, exc, cls, expected):
    with pytest.raises(cls) as caught:
        call(mode, client_for(Server(failing(exc))), "answer", "hi")
    assert type(caught.value) is cls and expected in str(caught.value)
    assert caught.value.__cause__ is exc
    assert call(mode, client_for(Server(failing(exc))), "ready") is False


def test_a_real_dead_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", timeout=5)
    with client, pytest.raises(EndpointError, match=f"cannot reach http://127.0.0.1:{port}/v1/models") as caught:
        client.models()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert client.ready() is False


# -- bad input ----------------------------------------------------------------------------------


def as_question(item: Any) -> Any:
    return Query(**item) if isinstance(item, dict) else item


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"bad input reached the server: {request.content!r}")


@pytest.mark.parametrize("case", TABLE["answer"], ids=lambda c: c["message"][:50])
def test_bad_answer_input(case):
    question = as_question(case["query"]) if "query" in case else case["question"]
    with pytest.raises(BadInput) as caught:
        client_for(Server(refuse)).answer(question, **case.get("kwargs", {}))
    assert str(caught.value) == case["message"]


@pytest.mark.parametrize("case", TABLE["batch"], ids=lambda c: c["message"][:50])
def test_bad_batch_input(case):
    questions = case["questions"]
    questions = questions if isinstance(questions, str) else [as_question(q) for q in questions]
    with pytest.raises(BadInput) as caught:
        client_for(Server(refuse)).answer_batch(questions, **case.get("kwargs", {}))
    assert str(caught.value) == case["message"]


def test_bad_input_is_refused_by_the_async_methods_too():
    client = client_for(Server(refuse))
    with pytest.raises(BadInput, match="a batch takes a list of questions"):
        asyncio.run(client.aanswer_batch("one question"))
    with pytest.raises(BadInput, match=r"questions\[0\]\.id: String should have at most 200 characters"):
        asyncio.run(client.aanswer_batch([Query(id="x" * 201, text="hi")]))
