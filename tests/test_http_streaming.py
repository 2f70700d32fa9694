"""HTTPEngine streaming: against tests/answer_server.py on a real socket (chat and completion,
usage, failures mid-stream), and the stream reader on the replies of tests/data/sse_streams.toml."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from answer_server import make_server
from userbench import answer_text, questions

from batching.engines.http import HTTPEngine
from batching.spec import ExpertSpec
from common.errors import EndpointError
from common.requests import Generation, Request

STREAMS = tomllib.loads((Path(__file__).parent / "data" / "sse_streams.toml").read_text(encoding="utf-8"))["case"]
ROWS = questions(8)


@dataclass(frozen=True)
class Served:
    url: str  # base URL, ending in /v1
    log: Path  # one JSON line per answer served


@contextmanager
def answer_server(log: Path, chunk_delay: float = 0.0) -> Iterator[tuple[Served, Callable[[], None]]]:
    """The answer server in a thread; yields it and a function that stops it early."""
    httpd = make_server(0, log, chunk_delay=chunk_delay)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)

    try:
        yield Served(f"http://127.0.0.1:{httpd.server_address[1]}/v1", log), stop
    finally:
        stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module, 20 ms between chunks."""
    with answer_server(tmp_path_factory.mktemp("server") / "served.jsonl", chunk_delay=0.02) as (served, _):
        yield served


def http_spec(base_url: str, model: str = "adder", prompt_mode: str = "chat", retries: int = 0) -> ExpertSpec:
    return ExpertSpec(
        name=model,
        source={"kind": "http", "base_url": base_url, "model": model, "retries": retries, "concurrency": 4},
        prompt_mode=prompt_mode,
    )


class Seen:
    """``on_delta`` and ``on_result`` of one batch: each event with its time and thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, object, float]] = []
        self.threads: set[int] = set()

    def delta(self, i: int, text: str) -> None:
        self.events.append(("delta", i, text, time.monotonic()))
        self.threads.add(threading.get_ident())

    def result(self, i: int, generation: Generation) -> None:
        self.events.append(("result", i, generation, time.monotonic()))
        self.threads.add(threading.get_ident())

    def deltas(self, i: int) -> list[str]:
        return [text for kind, j, text, _ in self.events if kind == "delta" and j == i]  # type: ignore[misc]


@pytest.mark.parametrize("prompt_mode", ["chat", "completion"])
def test_streams_each_answer_as_it_is_written(server: Served, prompt_mode: str) -> None:
    engine = HTTPEngine(http_spec(server.url, "multiplier", prompt_mode))
    engine.load()
    requests = [Request.user(row["qid"], row["problem"]) for row in ROWS[:4]]
    seen = Seen()
    try:
        out = engine.generate(requests, on_result=seen.result, on_delta=seen.delta)
    finally:
        engine.unload()
    assert seen.threads == {threading.get_ident()}  # both called in the calling thread
    spans: list[float] = []
    for i, (row, generation) in enumerate(zip(ROWS, out, strict=False)):
        expected = answer_text("multiplier", row)
        assert generation.ok and generation.text == expected
        assert "".join(seen.deltas(i)) == expected and len(seen.deltas(i)) == len(expected.split())
        assert generation.tokens_out == len(expected.split()) and generation.tokens_in > 3  # from the usage chunk
        assert generation.finish_reason == "stop"
        mine = [(kind, at) for kind, j, _, at in seen.events if j == i]
        assert [kind for kind, _ in mine][-1] == "result"  # every delta came before the result
        spans.append(mine[-1][1] - mine[0][1])
    # the words came as they were written, 20 ms apart, not all at the end (one answer's words may
    # still arrive together when a loaded machine leaves this thread waiting, so: the longest span)
    assert max(spans) > 0.1, spans


def test_the_same_answers_without_streaming(server: Served) -> None:
    for prompt_mode in ("chat", "completion"):
        engine = HTTPEngine(http_spec(server.url, "adder", prompt_mode))
        engine.load()
        requests = [Request.user(row["qid"], row["problem"]) for row in ROWS[:3]]
        try:
            plain = engine.generate(requests)
            streamed = engine.generate(requests, on_delta=lambda i, t: None)
        finally:
            engine.unload()
        assert [g.text for g in plain] == [g.text for g in streamed] == [answer_text("adder", r) for r in ROWS[:3]]
        assert [g.tokens_out for g in plain] == [g.tokens_out for g in streamed]


@pytest.mark.parametrize(
    ("model", "error"),
    [("broken", "reported an error mid-stream: the model ran out of memory"), ("hangup", "ended before the answer")],
)
def test_a_failure_mid_stream_fails_that_request_only(server: Served, model: str, error: str) -> None:
    faulty = HTTPEngine(http_spec(server.url, model, retries=2))
    faulty.load()
    seen = Seen()
    requests = [Request.user(row["qid"], row["problem"]) for row in ROWS[:2]]
    try:
        out = faulty.generate(requests, on_result=seen.result, on_delta=seen.delta)
    finally:
        faulty.unload()
    for i, generation in enumerate(out):
        assert not generation.ok and error in generation.error and "\n" not in generation.error
        assert seen.deltas(i) == ["Working ", "it ", "out "]  # what had arrived was handed out
    served = [json.loads(line) for line in server.log.read_text().splitlines()]
    assert sum(1 for s in served if s["model"] == model) == 2  # nothing was retried once it streamed


def test_an_endpoint_gone_after_load_is_an_endpoint_error(tmp_path: Path) -> None:
    with answer_server(tmp_path / "served.jsonl") as (served, stop):
        engine = HTTPEngine(http_spec(served.url, retries=1), sleep=lambda s: None)
        engine.load()
        stop()
        with pytest.raises(EndpointError, match="unreachable for all 2 request.*connection refused"):
            engine.generate([Request.user(r["qid"], r["problem"]) for r in ROWS[:2]], on_delta=lambda i, t: None)
        engine.unload()


def test_an_exception_in_on_delta_ends_the_batch(tmp_path: Path) -> None:
    def on_delta(i: int, text: str) -> None:
        raise OSError("client gone")

    with answer_server(tmp_path / "served.jsonl", chunk_delay=0.1) as (served, _):  # answers take 1.2 s
        engine = HTTPEngine(http_spec(served.url))
        engine.load()
        started = time.monotonic()
        try:
            with pytest.raises(OSError, match="client gone"):
                engine.generate([Request.user(r["qid"], r["problem"]) for r in ROWS], on_delta=on_delta)
        finally:
            engine.unload()
        assert time.monotonic() - started < 0.6  # the streams being read were dropped, not read to the end


# -- the stream reader, case by case ----------------------------------------------------------------


@pytest.mark.parametrize("case", STREAMS, ids=[c["name"] for c in STREAMS])
def test_stream_cases(case: dict) -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "smol"}]})
        bodies.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=case["body"].encode())

    spec = ExpertSpec(
        name="remote",
        source={"kind": "http", "base_url": "http://llm.test/v1", "model": "smol"},
        prompt_mode=case["mode"],
    )
    engine = HTTPEngine(spec, transport=httpx.MockTransport(handler))
    engine.load()
    deltas: list[str] = []
    [generation] = engine.generate([Request.user("r", "What is 2 + 2?")], on_delta=lambda i, t: deltas.append(t))
    assert bodies[0]["stream"] is True and bodies[0]["stream_options"] == {"include_usage": True}
    assert ("messages" in bodies[0]) == (case["mode"] == "chat")
    assert deltas == case["deltas"]
    if "error" in case:
        assert not generation.ok and case["error"] in generation.error and "\n" not in generation.error
    else:
        assert generation.ok and generation.text == "".join(case["deltas"])
        assert generation.finish_reason == case["finish"]
        assert [generation.tokens_in, generation.tokens_out] == case["tokens"]


def test_a_stream_is_retried_until_the_server_accepts_it() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "smol"}]})
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        chunk = {"choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]}
        return httpx.Response(200, content=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())

    spec = ExpertSpec(name="remote", source={"kind": "http", "base_url": "http://llm.test/v1", "model": "smol"})
    engine = HTTPEngine(spec, transport=httpx.MockTransport(handler), sleep=lambda s: None)
    engine.load()
    [generation] = engine.generate([Request.user("r", "q")], on_delta=lambda i, t: None)
    assert generation.text == "fine" and calls == ["/v1/chat/completions"] * 3
