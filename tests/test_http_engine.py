"""HTTPEngine against httpx.MockTransport servers (and one real dead port)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable

import httpx
import pytest

from batching.engines.http import HTTPEngine
from batching.spec import ExpertSpec
from common.errors import EndpointError, EngineError
from common.requests import Request

BASE = "http://llm.test/v1"


def spec(prompt_mode: str = "chat", **source) -> ExpertSpec:
    fields = {"kind": "http", "base_url": BASE, "model": "smol", "retries": 2, **source}
    return ExpertSpec(
        name="remote", source=fields, prompt_mode=prompt_mode, sampling={"max_tokens": 12, "stop": ["\n\n"]}
    )


def models_reply(*ids: str) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


def chat_reply(body: dict) -> httpx.Response:
    text = f"echo: {body['messages'][-1]['content']}"
    return httpx.Response(
        200,
        json={
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        },
    )


class Server:
    """A scripted OpenAI-style server: records calls; ``script`` may override any answer."""

    def __init__(self, script: Callable[[httpx.Request, int], httpx.Response | None] | None = None) -> None:
        self.calls: list[httpx.Request] = []
        self.script = script
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append(request)
            n = len(self.calls)
        if self.script is not None:
            scripted = self.script(request, n)
            if scripted is not None:
                return scripted
        if request.url.path == "/v1/models":
            return models_reply("smol", "other")
        body = json.loads(request.content)
        if request.url.path == "/v1/chat/completions":
            return chat_reply(body)
        if request.url.path == "/v1/completions":
            return httpx.Response(200, json={"choices": [{"text": " Paris.", "finish_reason": "length"}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    def paths(self) -> list[str]:
        return [c.url.path for c in self.calls]


def engine(server: Server, prompt_mode: str = "chat", delays: list[float] | None = None, **source) -> HTTPEngine:
    sleep = (delays.append) if delays is not None else (lambda _s: None)
    return HTTPEngine(spec(prompt_mode, **source), transport=httpx.MockTransport(server), sleep=sleep)


def test_chat_batch_in_order_with_body_and_usage() -> None:
    server = Server()
    eng = engine(server)
    eng.load()
    assert eng.loaded and eng.served_models == ["smol", "other"]
    requests = [Request.user(f"r{i}", f"question {i}") for i in range(20)]
    out = eng.generate([*requests[:-1], Request.user("r19", "question 19", max_tokens=3)])
    assert [g.request_id for g in out] == [r.id for r in requests]
    assert [g.text for g in out] == [f"echo: question {i}" for i in range(20)]
    assert all(g.ok and g.tokens_in == 7 and g.tokens_out == 3 and g.finish_reason == "stop" for g in out)
    bodies = {json.loads(c.content)["messages"][-1]["content"]: json.loads(c.content) for c in server.calls[1:]}
    assert bodies["question 0"]["max_tokens"] == 12 and bodies["question 19"]["max_tokens"] == 3
    assert bodies["question 0"]["model"] == "smol" and bodies["question 0"]["stop"] == ["\n\n"]
    assert bodies["question 0"]["temperature"] == 0.0 and bodies["question 0"]["seed"] == 0
    eng.unload()
    assert not eng.loaded
    eng.unload()  # idempotent


def test_completion_mode_posts_a_prompt() -> None:
    server = Server()
    eng = engine(server, prompt_mode="completion")
    eng.load()
    [generation] = eng.generate([Request.user("c", "The capital of France?")])
    assert generation.text == " Paris." and generation.finish_reason == "length"
    assert generation.tokens_out == 0  # no usage in the reply: unknown, not invented
    body = json.loads(server.calls[-1].content)
    assert server.paths()[-1] == "/v1/completions"
    assert body["prompt"].startswith("Question: The capital of France?") and body["prompt"].endswith("Answer:")


def test_api_key_is_sent_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_TEST_KEY", "sekret")
    server = Server()
    eng = engine(server, api_key_env="COE_TEST_KEY")
    eng.load()
    assert server.calls[0].headers["authorization"] == "Bearer sekret"


def test_missing_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COE_TEST_KEY", raising=False)
    with pytest.raises(EndpointError, match="COE_TEST_KEY"):
        engine(Server(), api_key_env="COE_TEST_KEY").load()


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retryable_status_is_retried_with_exponential_backoff(status: int) -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        return httpx.Response(status, text="busy") if request.url.path.endswith("completions") and n <= 3 else None

    delays: list[float] = []
    eng = engine(Server(script), delays=delays)
    eng.load()
    [generation] = eng.generate([Request.user("a", "hi")])
    assert generation.ok and generation.text == "echo: hi"
    assert delays == [0.5, 1.0]


def test_retry_after_header_is_honoured_up_to_the_cap() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions") and n == 2:
            return httpx.Response(429, headers={"Retry-After": "3"})
        if request.url.path.endswith("completions") and n == 3:
            return httpx.Response(429, headers={"Retry-After": "600"})
        return None

    delays: list[float] = []
    eng = engine(Server(script), delays=delays)
    eng.load()
    assert eng.generate([Request.user("a", "hi")])[0].ok
    assert delays == [3.0, 8.0]


def test_persistent_5xx_becomes_a_failed_generation_with_the_server_message() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions"):
            return httpx.Response(503, json={"error": {"message": "model overloaded"}})
        return None

    server = Server(script)
    eng = engine(server, retries=1)
    eng.load()
    [generation] = eng.generate([Request.user("a", "hi")])
    assert not generation.ok and "HTTP 503" in generation.error and "model overloaded" in generation.error
    assert server.paths().count("/v1/chat/completions") == 2


def test_client_error_is_not_retried() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions"):
            return httpx.Response(400, json={"object": "error", "message": "prompt is too long"})
        return None

    server = Server(script)
    eng = engine(server)
    eng.load()
    [generation] = eng.generate([Request.user("a", "hi")])
    assert "HTTP 400" in generation.error and "prompt is too long" in generation.error
    assert server.paths().count("/v1/chat/completions") == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (httpx.Response(200, text="<html>gateway</html>"), "not JSON"),
        (httpx.Response(200, json={"choices": []}), "malformed reply"),
        (httpx.Response(200, json={"choices": [{"text": "wrong shape"}]}), "malformed reply"),
        (httpx.Response(200, json={"choices": [{"message": {"content": None}}]}), "malformed reply"),
    ],
    ids=["html", "no-choices", "completion-shape-for-chat", "null-content"],
)
def test_malformed_generation_reply_is_a_failed_generation(reply: httpx.Response, expected: str) -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        return reply if request.url.path.endswith("completions") else None

    eng = engine(Server(script))
    eng.load()
    [generation] = eng.generate([Request.user("a", "hi")])
    assert not generation.ok and expected in generation.error


def test_one_bad_request_does_not_sink_the_batch() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions") and b"poison" in request.content:
            return httpx.Response(400, json={"message": "bad input"})
        return None

    eng = engine(Server(script))
    eng.load()
    out = eng.generate([Request.user("a", "fine"), Request.user("b", "poison"), Request.user("c", "fine too")])
    assert [g.ok for g in out] == [True, False, True]


def test_connection_errors_are_retried_then_the_engine_fails() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions"):
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return None

    delays: list[float] = []
    server = Server(script)
    eng = engine(server, delays=delays)
    eng.load()
    with pytest.raises(EndpointError, match="unreachable for all 2 request.*connection refused"):
        eng.generate([Request.user("a", "hi"), Request.user("b", "ho")])
    assert server.paths().count("/v1/chat/completions") == 6 and sorted(delays) == [0.5, 0.5, 1.0, 1.0]


def test_connection_drop_once_is_recovered() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions") and n == 2:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return None

    eng = engine(Server(script))
    eng.load()
    assert eng.generate([Request.user("a", "hi")])[0].text == "echo: hi"


def test_timeout_is_a_failed_generation_not_retried() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions"):
            raise httpx.ReadTimeout("timed out", request=request)
        return None

    server = Server(script)
    eng = engine(server, timeout_s=5)
    eng.load()
    [generation] = eng.generate([Request.user("a", "hi")])
    assert "timed out after 5s" in generation.error
    assert server.paths().count("/v1/chat/completions") == 1


def test_concurrency_is_bounded() -> None:
    active, peak = 0, 0
    gate = threading.Lock()
    release = threading.Event()

    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        nonlocal active, peak
        if request.url.path.endswith("completions"):
            with gate:
                active += 1
                peak = max(peak, active)
            release.wait(0.05)
            with gate:
                active -= 1
        return None

    eng = engine(Server(script), concurrency=3)
    eng.load()
    out = eng.generate([Request.user(f"r{i}", "hi") for i in range(12)])
    assert all(g.ok for g in out) and peak == 3


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (httpx.Response(404, json={"detail": "Not Found"}), "404 Not Found: is base_url right"),
        (httpx.Response(401, json={"error": "no key"}), "refused access"),
        (httpx.Response(200, text="hello, I am a web page"), "not JSON"),
        (httpx.Response(200, json={"models": ["smol"]}), "without a 'data' list"),
        (httpx.Response(200, json={"data": [{"name": "smol"}]}), "without a 'data' list"),
        (models_reply("gpt-x", "llama"), "does not serve model 'smol'; it serves: gpt-x, llama"),
        (httpx.Response(500, text="boom"), "HTTP 500"),
    ],
    ids=["wrong-url", "unauthorised", "html", "no-data", "no-ids", "wrong-model", "server-error"],
)
def test_load_checks_the_endpoint(reply: httpx.Response, expected: str) -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        return reply if request.url.path == "/v1/models" else None

    eng = engine(Server(script))
    with pytest.raises(EndpointError, match=expected) as info:
        eng.load()
    assert "\n" not in str(info.value)
    assert not eng.loaded


def test_generate_before_load_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="before load"):
        engine(Server()).generate([Request.user("a", "hi")])


def test_not_an_http_spec_is_rejected() -> None:
    with pytest.raises(EndpointError, match="not an http source"):
        HTTPEngine(ExpertSpec(name="x", source={"kind": "vllm", "model": "some/model"}))


def test_dead_port_gives_a_clear_error() -> None:
    with socket.socket() as sock:  # find a free port, then close it: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    eng = HTTPEngine(spec(base_url=f"http://127.0.0.1:{port}/v1", retries=1), backoff_s=0.01)
    with pytest.raises(EndpointError, match=rf"cannot reach http://127.0.0.1:{port}/v1/models: connection refused"):
        eng.load()
    assert not eng.loaded


def test_each_answer_is_reported_in_the_calling_thread_as_it_arrives() -> None:
    slow_may_finish = threading.Event()

    def script(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("completions") and b"slow" in request.content:
            assert slow_may_finish.wait(5), "the fast answers were not reported while the slow one ran"
        return None

    seen: list[tuple[int, str, str]] = []

    def on_result(i: int, generation) -> None:
        seen.append((i, generation.text, threading.current_thread().name))
        if len(seen) == 2:
            slow_may_finish.set()  # only now may the slow request answer

    eng = engine(Server(script), concurrency=3)
    eng.load()
    out = eng.generate(
        [Request.user("a", "slow"), Request.user("b", "fast"), Request.user("c", "quick")], on_result=on_result
    )
    assert [g.text for g in out] == ["echo: slow", "echo: fast", "echo: quick"]
    assert sorted(i for i, _, _ in seen[:2]) == [1, 2] and seen[2][:2] == (0, "echo: slow")
    assert {name for _, _, name in seen} == {threading.current_thread().name}
