"""``coe serve`` on the fast tier: a real uvicorn server on a loopback port, the default pool with
fake engines (the real tier runs the same routes on real vLLM models), called with httpx, the
SDK's ``Client`` and the ``openai`` client."""

from __future__ import annotations

import asyncio
import threading
import time
import tomllib
from pathlib import Path

import httpx
import openai
import pytest

from batching import FakeEngine
from common.errors import BadInput, NotFound, Unauthorized
from orchestrator import Client, Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from tests.live_server import serving

KEY = "s3cret-key-for-tests"
CASES = tomllib.loads((Path(__file__).parent / "data" / "service_bad_requests.toml").read_text())["case"]


def words(spec, request) -> str:
    return f"{spec.name} thinks it over. Final answer: {spec.name}-{len(request.text) % 7}"


class Engines:
    """Fake engines, kept so a test can see what each was asked. ``delay`` slows every generation
    (every request of it with ``per_request``); ``answer`` writes each answer."""

    def __init__(self, delay: float = 0.0, *, answer=words, per_request: bool = False) -> None:
        self.made: list[FakeEngine] = []
        self.delay = delay
        self.answer = answer
        self.per_request = per_request

    def __call__(self, spec, cpus=None):
        delay, per_request = self.delay, self.per_request

        class Slow(FakeEngine):
            def generate(self, requests, on_result=None, on_delta=None):
                time.sleep(delay * len(requests) if per_request else delay)
                return super().generate(requests, on_result, on_delta)

        self.made.append(Slow(spec, answer=self.answer))
        return self.made[-1]

    def asked(self) -> list[str]:
        return [rid for e in self.made for batch in e.batches for rid in batch]

    @property
    def loads(self) -> int:
        return sum(e.loads for e in self.made)


def make_app(tmp_path, engines, *, budget=20_000, cache="use", store=None, **service):
    core = load_settings(
        pool=PROJECT_ROOT / "pools" / "default",
        runs_dir=tmp_path / "runs",
        memory_budget_mb=budget,
        policy="all",
        max_question_chars=2_000,
        cache=cache,
        store=store,
    )
    settings = ServiceSettings(core=core, **service)
    return create_app(settings, service=Service(settings, Orchestrator(core, engine_factory=engines)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    keys = tmp / "keys.txt"
    keys.write_text(f"# the test's key\n{KEY}\n")
    engines = Engines()
    # these tests ask some questions twice and watch the aggregator stream: no answers from the cache
    app = make_app(tmp, engines, api_keys_file=keys, max_body_bytes=4_096, cache="off")
    with serving(app) as url:
        yield url, engines


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_answer_returns_the_answer_and_its_trace(server):
    url, _ = server
    reply = httpx.post(f"{url}/v1/answer", json={"question": "Is water wet?"}, headers=auth(), timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["text"].startswith("smollm2 thinks it over")  # the aggregator's words
    assert sorted(e["expert"] for e in body["trace"]["experts"]) == ["gemma3", "smollm2"]
    assert body["trace"]["aggregator"] == "smollm2"


def test_majority_and_max_tokens_reach_the_pipeline(server):
    url, _ = server
    body = {"question": "Pick one.", "options": ["yes", "no"], "aggregation": "majority", "id": "pick-1"}
    reply = httpx.post(f"{url}/v1/answer", json=body, headers=auth(), timeout=30).json()
    assert reply["question_id"] == "pick-1"
    assert reply["trace"]["aggregator"] == "majority" and reply["trace"]["aggregation"]["method"] == "majority"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_requests_get_their_status_and_one_json_error(server, case):
    url, _ = server
    if "body_repeat" in case:
        head, unit, times, tail = case["body_repeat"]
        content = head + unit * times + tail
    else:
        content = case["body"]
    key = case.get("key", "good")
    headers = {"Content-Type": "application/json"}
    if key != "none":
        headers.update(auth(KEY if key == "good" else key))
    reply = httpx.post(f"{url}{case['path']}", content=content.encode(), headers=headers, timeout=30)
    assert reply.status_code == case["status"], reply.text
    error = reply.json()["error"]
    assert error["type"] == case["type"]
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    if "param" in case:
        assert error["param"] == case["param"]
    if case["status"] == 401:
        assert error["message"] == "missing or wrong API key"  # no detail


def test_health_readiness_models_and_metrics(server):
    """/healthz is open (a liveness probe learns only "ok"); /readyz and /metrics need a key."""
    url, _ = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    for path in ("/readyz", "/metrics"):
        refused = httpx.get(f"{url}{path}")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
    ready = httpx.get(f"{url}/readyz", headers=auth())
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert set(ready.json()["experts"]) == {"smollm2", "gemma3"}
    assert ready.json()["jobs"]["store"] == "sqlite"  # what kind of store, not where
    models = httpx.get(f"{url}/v1/models", headers=auth()).json()
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == "default" and "default/topk" in ids and "default/adaptive" in ids
    httpx.post(f"{url}/v1/answer", json={"question": "Is ice cold?"}, headers=auth(), timeout=30)
    httpx.post(f"{url}/v1/answer", content=b"{" + b" " * 5_000 + b"}", headers=auth(), timeout=30)  # 413
    httpx.post(f"{url}/v1/answer", json={"question": "Hi?"}, headers=auth("wrong"), timeout=30)  # 401
    text = httpx.get(f"{url}/metrics", headers=auth()).text
    for name in (
        'coe_requests_total{route="/v1/answer",status="200"}',
        'coe_model_loads_total{model="smollm2"}',
        'coe_errors_total{type="unauthorized"}',
        'coe_errors_total{type="too_large"}',
        'coe_stage_seconds_count{stage="queue"}',
        'coe_tokens_total{direction="out",role="aggregator"}',
        "coe_queue_depth",
    ):
        assert name in text, name


def test_the_openai_client_plain_and_streaming(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
    plain = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Is snow white?"}])
    text = plain.choices[0].message.content
    assert text and text.startswith("smollm2 thinks it over")
    assert plain.model_extra["trace"]["aggregator"] == "smollm2"
    assert plain.usage.total_tokens > 0
    stream = client.chat.completions.create(
        model="default/all", messages=[{"role": "user", "content": "Is snow white?"}], stream=True
    )
    pieces, last = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    assert "".join(pieces) == text  # the same answer, in pieces as the aggregator wrote it
    assert len(pieces) > 3  # the fake aggregator streams word by word
    assert last.choices[0].finish_reason == "stop" and last.model_extra["trace"]["question_id"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi?"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong").models.list()


def test_the_sdk_client_sync_and_async(server):
    url, _ = server
    with Client(url, api_key=KEY) as client:
        one = client.answer("Is the sky blue?")
        assert one.trace.aggregator == "smollm2"
        batch = client.answer_batch(["First?", "Second?"], aggregation="majority")
        assert [a.trace.aggregator for a in batch] == ["majority", "majority"]
        with pytest.raises(NotFound):
            client.answer("Hi?", policy="telepathy")
        with pytest.raises(BadInput):
            client.answer("x" * 2_500)

    async def both():
        async with Client(url, api_key=KEY) as client:
            return await asyncio.gather(client.aanswer("Async one?"), client.aanswer_batch(["Async two?"]))

    single, many = asyncio.run(both())
    assert single.text and len(many) == 1
    with pytest.raises(Unauthorized), Client(url, api_key="wrong") as client:
        client.answer("Hi?")


def test_grouping_swaps_less_than_fifo_with_room_for_one_model(tmp_path):
    """A budget for one model: six requests at once run as one batch (each model loaded once),
    against one batch each in arrival order."""
    swaps = {}
    for grouping in (True, False):
        engines = Engines(delay=0.05)
        app = make_app(tmp_path / str(grouping), engines, budget=9_000, grouping=grouping, gather_ms=2_500)
        with serving(app) as url:

            def ask(i: int) -> None:
                reply = httpx.post(f"{url}/v1/answer", json={"question": f"Question {i}?"}, timeout=60)
                assert reply.status_code == 200, reply.text

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            metrics = httpx.get(f"{url}/metrics").text
        swaps[grouping] = sum(
            float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("coe_model_swaps_total")
        )
    assert swaps[True] <= 2 < swaps[False]


def test_a_client_that_goes_away_cancels_its_waiting_work(tmp_path):
    engines = Engines(delay=1.5)
    app = make_app(tmp_path, engines, gather_ms=0)
    with serving(app) as url:
        first = threading.Thread(
            target=lambda: httpx.post(f"{url}/v1/answer", json={"question": "Slow one?", "id": "slow"}, timeout=60)
        )
        first.start()
        deadline = time.monotonic() + 30
        while "coe_batches_total 1.0" not in httpx.get(f"{url}/metrics").text:  # the first batch is running
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/answer", json={"question": "Gone?", "id": "gone"}, timeout=0.5)
        first.join()
        time.sleep(1.0)
        metrics = httpx.get(f"{url}/metrics").text
    assert "coe_cancelled_total 1.0" in metrics
    assert 'coe_requests_total{route="/v1/answer",status="499"} 1.0' in metrics  # not a 500
    assert 'status="500"' not in metrics
    asked = engines.asked()
    assert any(r.startswith("slow/") for r in asked)
    assert not any(r.startswith("gone/") for r in asked)  # never reached an engine


def test_rate_limit_is_429_naming_the_limit(tmp_path):
    app = make_app(tmp_path, Engines(), rate_limit_per_minute=2)
    with serving(app) as url:
        codes = [httpx.get(f"{url}/v1/models").status_code for _ in range(3)]
        reply = httpx.get(f"{url}/v1/models")
    assert codes == [200, 200, 429]
    assert reply.status_code == 429 and reply.json()["error"]["type"] == "rate_limited"
    assert "2 requests per minute" in reply.json()["error"]["message"]
    assert int(reply.headers["Retry-After"]) >= 1
