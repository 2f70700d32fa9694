"""``coe serve`` at its edges, through a real uvicorn server: a full queue and a passed deadline
are refused with 503 ``overloaded`` and ``Retry-After`` (streamed requests too, with a status
code, not inside a begun stream), counted by reason; and the warm-up: ``/readyz`` is 503 until
every engine that stays warm, the encoder and the recordings are loaded, and the first request
loads nothing (fake engines; the replay pool with its real encoder and recordings)."""

from __future__ import annotations

import threading
import time

import httpx

from batching import FakeEngine
from tests.live_server import serving
from tests.test_service import Engines, make_app


def metric(url: str, name: str) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def wait_until(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def in_background(url: str, body: dict, replies: list) -> threading.Thread:
    def ask() -> None:
        replies.append(httpx.post(f"{url}/v1/answer", json=body, timeout=60))

    thread = threading.Thread(target=ask)
    thread.start()
    return thread


def chat(question: str) -> dict:
    return {"model": "default", "stream": True, "messages": [{"role": "user", "content": question}]}


class Gated(Engines):
    """Fake engines whose generations wait until ``gate`` opens: the batch in flight holds the
    dispatcher as long as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def __call__(self, spec, cpus=None):
        gate = self.gate

        class Held(FakeEngine):
            def generate(self, requests, on_result=None, on_delta=None):
                assert gate.wait(60), "the test never opened the gate"
                return super().generate(requests, on_result, on_delta)

        self.made.append(Held(spec))
        return self.made[-1]


def test_a_full_queue_refuses_with_503_and_retry_after_streams_included(tmp_path):
    engines = Gated()
    app = make_app(tmp_path, engines, gather_ms=0, max_queue=2, max_batch_questions=2)
    with serving(app) as url:
        replies: list[httpx.Response] = []
        threads = [in_background(url, {"question": "Slow one?", "id": "running"}, replies)]
        try:
            wait_until(lambda: metric(url, "coe_batches_total") == 1)  # the dispatcher is busy with it
            threads += [in_background(url, {"question": f"Queued {i}?", "id": f"queued-{i}"}, replies) for i in (1, 2)]
            wait_until(lambda: metric(url, "coe_queue_depth") == 2)  # the queue is full

            refused = httpx.post(f"{url}/v1/answer", json={"question": "One more?", "id": "refused"}, timeout=30)
            batch = httpx.post(f"{url}/v1/answer/batch", json={"questions": ["A?"]}, timeout=30)
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat("Streamed?"), timeout=30) as stream:
                stream.read()
        finally:
            engines.gate.set()
            for thread in threads:
                thread.join()
        refusals = metric(url, 'coe_refused_total{reason="queue_full"}')

    for reply in (refused, batch, stream):
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["type"] == "overloaded"
        assert reply.json()["error"]["param"] == "max_queue"
        assert int(reply.headers["Retry-After"]) >= 1
    assert stream.headers["content-type"].startswith("application/json")  # an error body, not an event stream
    assert sorted(r.status_code for r in replies) == [200, 200, 200]  # those admitted were answered
    assert refusals == 3
    assert not any(r.startswith("refused/") for r in engines.asked())


def test_a_request_waiting_past_its_deadline_is_503_and_never_runs(tmp_path):
    engines = Gated()
    app = make_app(tmp_path, engines, gather_ms=0, queue_timeout_s=0.5)
    with serving(app) as url:
        replies: list[httpx.Response] = []
        first = in_background(url, {"question": "Slow one?", "id": "slow"}, replies)
        try:
            wait_until(lambda: metric(url, "coe_batches_total") == 1)
            # answered at its deadline while the batch in flight still holds the dispatcher
            late = httpx.post(f"{url}/v1/answer", json={"question": "Late?", "id": "late"}, timeout=30)
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat("Late stream?"), timeout=30) as stream:
                stream.read()
            assert not engines.gate.is_set() and first.is_alive()
        finally:
            engines.gate.set()
            first.join()
        time.sleep(0.3)  # the dispatcher is free again: nothing late may run now
        refusals = metric(url, 'coe_refused_total{reason="deadline"}')
        batches = metric(url, "coe_batches_total")

    assert replies[0].status_code == 200
    for reply in (late, stream):
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["type"] == "overloaded"
        assert reply.json()["error"]["param"] == "queue_timeout_s"
        assert int(reply.headers["Retry-After"]) >= 1
    assert refusals == 2
    assert batches == 1  # neither late request ever ran
    assert all(r.startswith("slow/") for r in engines.asked())
