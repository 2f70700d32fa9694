"""``coe serve`` at its edges, through a real uvicorn server: a full queue and a passed deadline
are refused with 503 ``overloaded`` and ``Retry-After`` (streamed requests too, with a status
code, not inside a begun stream), counted by reason; and the warm-up: ``/readyz`` is 503 until
every engine that stays warm, the encoder and the recordings are loaded, and the first request
loads nothing (fake engines; the replay pool with its real encoder and recordings)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import httpx
import pytest

from batching import FakeEngine
from common.recordings import iter_records
from eval import load_benchmark
from eval.data import replay_path
from orchestrator import Orchestrator, load_pool, load_settings
from orchestrator.pools.settings import shipped_pool
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
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


class HeldWarmUp:
    """Holds a service's warm-up back (it runs holding the orchestrator's ``busy`` lock) from before
    the server starts until ``release()``."""

    def __init__(self, service: Service) -> None:
        self.busy = service.coe.busy
        self.held = False

    def __enter__(self) -> HeldWarmUp:
        self.busy.acquire()
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.busy.release()

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.mark.parametrize("lazy", [False, True])
def test_ready_only_after_the_warm_up_and_the_first_request_loads_nothing(tmp_path, lazy):
    engines = Engines()
    core = load_settings(pool=shipped_pool("default"), runs_dir=tmp_path / "runs", memory_budget_mb=20_000)
    settings = ServiceSettings(core=core, lazy=lazy)
    service = Service(settings, Orchestrator(core, engine_factory=engines))
    with HeldWarmUp(service) as held, serving(create_app(settings, service=service)) as url:
        first = httpx.get(f"{url}/readyz")
        loads_before = engines.loads
        held.release()
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        loads_when_ready = engines.loads
        reply = httpx.post(f"{url}/v1/answer", json={"question": "Warm?"}, timeout=60)
        assert reply.status_code == 200, reply.text
        loads_after = engines.loads
        metric_loads = metric(url, 'coe_model_loads_total{model="smollm2"}')

    assert loads_before == 0
    if lazy:  # readiness as before: ready at once, the first request loads the models
        assert first.status_code == 200
        assert (loads_when_ready, loads_after) == (0, 2)
    else:
        assert first.status_code == 503
        assert "warm-up" in first.json()["problems"]
        assert loads_when_ready == 2  # both models of the default pool fit the budget: both stay warm
        assert loads_after == 2  # the first request after ready loaded nothing
    assert metric_loads == 1


WARM_LOGS = ("replay: indexed", "embedder: loaded")
"""What the recordings' reader and the encoder log when they load (``common.recordings``, ``skills.embed``)."""


@pytest.mark.data
def test_the_replay_pool_is_ready_with_its_encoder_and_recordings_loaded(data_dir, tmp_path, caplog):
    """replay-small on its own copy of the recordings of 30 questions (so nothing is indexed yet in
    this process): /readyz is 503 while the encoder and the recordings load, and once ready the
    first requests load nothing."""
    pool = shipped_pool("replay-small")
    models = {spec.source.model for spec in load_pool(pool, data_dir).specs.values() if spec.source.kind == "replay"}
    items = load_benchmark("mmlu_pro").questions(data_dir, "test")[:30]
    wanted = {q.id for q in items}
    recordings = tmp_path / "recordings.jsonl"
    with recordings.open("w", encoding="utf-8") as out:
        for r in iter_records(replay_path(data_dir), models):
            if r.question_id in wanted:
                row = {"model": r.model, "question_id": r.question_id, "text": r.text, "pred": r.pred}
                out.write(json.dumps(row) + "\n")
    copy = tmp_path / "pool"
    shutil.copytree(pool, copy)
    toml = copy / "pool.toml"
    toml.write_text(toml.read_text().replace("{data_dir}/replay/mmlu_pro_replay.jsonl.gz", str(recordings)))
    # a budget for the recorded experts alone: the vLLM aggregator (unused by votes) does not stay warm
    # and an empty embeddings cache: the requests' questions must be embedded, by the encoder loaded
    core = load_settings(
        pool=copy, data_dir=data_dir, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", memory_budget_mb=1_000
    )
    caplog.set_level(logging.INFO)
    settings = ServiceSettings(core=core)
    service = Service(settings)
    with HeldWarmUp(service) as held, serving(create_app(settings, service=service)) as url:
        first = httpx.get(f"{url}/readyz")
        held.release()
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, seconds=300)
        warm = [r.getMessage() for r in caplog.records]
        loads = metric(url, 'coe_model_loads_total{model="mathstral-7b"}')
        caplog.clear()
        for q in items[:5]:
            body = {"question": q.text, "options": list(q.options), "id": q.id, "policy": "topk", "k": 3}
            reply = httpx.post(f"{url}/v1/answer", json={**body, "aggregation": "majority"}, timeout=60)
            assert reply.status_code == 200, reply.text
        after = [r.getMessage() for r in caplog.records]
        assert metric(url, 'coe_model_loads_total{model="mathstral-7b"}') == loads == 1

    assert first.status_code == 503 and "warm-up" in first.json()["problems"]
    for line in WARM_LOGS:
        assert any(m.startswith(line) for m in warm), line  # the warm-up did load it
        assert not any(m.startswith(line) for m in after), line  # and no request loaded it again
