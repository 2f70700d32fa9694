"""Batch jobs over REST on a live server (the default pool with fake engines, fast): submit,
follow, read results in the ``coe eval`` format, cancel; bad requests; on SQLite and on a real
Redis, which may go away and come back; two replicas sharing one Redis."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from orchestrator.settings import JobSettings
from tests import test_service as service_tests
from tests import userbench
from tests.live_server import serving
from tests.redis_server import RedisServer

KEY = "batch-test-key"
OTHER_KEY = "another-batch-test-key"
CASES = tomllib.loads((Path(__file__).parent / "data" / "batch_bad_requests.toml").read_text())["case"]
SUM = re.compile(r"What is (\d+) \+ (\d+)\?")
PRODUCT = re.compile(r"What is (\d+) times (\d+)\?")


def arithmetic(spec, request) -> str:
    """Both experts add right; gemma3 multiplies one too many; anything else gets a plain reply."""
    text = request.text
    if found := SUM.search(text):
        value = int(found[1]) + int(found[2])
    elif found := PRODUCT.search(text):
        value = int(found[1]) * int(found[2]) + (1 if spec.name == "gemma3" else 0)
    else:
        return f"{spec.name} thinks it over. Final answer: {spec.name}"
    return f"Working it out gives {value:,}. The answer is {value:,}.\nFinal answer: {value:,}"


def arithmetic_engines(delay: float = 0.0) -> service_tests.Engines:
    """The service tests' fake engines, answering arithmetic, slowed per request."""
    return service_tests.Engines(delay, answer=arithmetic, per_request=True)


def make_app(
    tmp_path: Path,
    engines: service_tests.Engines,
    store: str | None = None,
    *,
    benchmarks=(),
    keys=True,
    rate_limit_per_minute: int | None = None,
    **jobs,
):
    """A service on ``store`` with two keys (``KEY``, ``OTHER_KEY``; none if not ``keys``), the
    benchmark spec files ``benchmarks`` registered, and ``jobs`` settings."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{KEY}\n{OTHER_KEY}\n")
    job_settings = JobSettings(**{"chunk": 2, "heartbeat_s": 0.2, "reclaim_s": 1.0, "poll_s": 0.2, **jobs})
    return service_tests.make_app(
        tmp_path,
        engines,
        store=store,
        api_keys_file=key_file if keys else None,
        jobs=job_settings,
        benchmarks=tuple(benchmarks),
        rate_limit_per_minute=rate_limit_per_minute,
    )


AUTH = {"Authorization": f"Bearer {KEY}"}


def call(url: str, method: str, path: str, *, key: str = KEY, **kwargs) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs)


def wait_for(
    url: str, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 60, key: str = KEY
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = call(url, "GET", f"/v1/batches/{job_id}", key=key).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return userbench.write_benchmark(tmp_path_factory.mktemp("bench"), 12)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request, tmp_path_factory, spec):
    """A live server on SQLite or on a real Redis, the user benchmark ``arith`` registered;
    yields (url, engines)."""
    tmp = tmp_path_factory.mktemp(f"batches-{request.param}")
    redis = RedisServer(tmp / "redis").start() if request.param == "redis" else None
    engines = arithmetic_engines()
    try:
        with serving(make_app(tmp, engines, redis.url if redis else None, benchmarks=[spec])) as url:
            yield url, engines
    finally:
        if redis is not None:
            redis.stop()


def test_inline_job_runs_and_gives_unscored_results(served):
    url, _ = served
    questions = ["What is 2 + 3?", {"question": "What is 4 times 5?", "id": "prod"}, "Is water wet?"]
    reply = call(url, "POST", "/v1/batches", json={"questions": questions, "aggregation": "majority"})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert job["state"] == "queued" and job["total"] == 3 and job["id"].startswith("batch_")
    done = wait_for(url, job["id"])
    assert done["state"] == "done" and done["done"] == 3 and done["attempts"] == 1, done
    body = call(url, "GET", f"/v1/batches/{job['id']}/results").json()
    run, results = body["run"], body["results"]
    assert run["run_id"] == job["id"] and run["benchmark"] == "inline" and run["questions"] == 3
    assert run["pool_dir"] == run["pool"] == "default"  # the pool's name: no server path
    assert run["aggregator"] == "majority" and [m["name"] for m in run["methods"]] == ["ours"]
    assert [r["question_id"] for r in results][1] == "prod"
    for row in results:
        assert row["gold"] is None and row["methods"]["ours"]["correct"] is None
        assert sorted(e["expert"] for e in row["experts"]) == ["gemma3", "smollm2"]
        assert all(e["correct"] is None for e in row["experts"])
    assert results[0]["methods"]["ours"]["final"] == "5"


def test_benchmark_job_is_scored_with_the_benchmark(served, spec):
    url, _ = served
    body = {"benchmark": "arith", "limit": 6, "seed": 1, "aggregation": "majority"}
    job = call(url, "POST", "/v1/batches", json=body).json()
    assert job["total"] == 6 and job["request"]["benchmark"] == "arith"
    assert wait_for(url, job["id"])["state"] == "done"
    results = call(url, "GET", f"/v1/batches/{job['id']}/results").json()
    assert results["run"]["benchmark"] == "arith" and results["run"]["split"] == "test"
    assert results["run"]["questions_in_split"] == 12 and results["run"]["limit"] == 6
    rows = results["results"]
    assert len(rows) == 6 and all(r["gold"] for r in rows)
    for row in rows:
        experts = {e["expert"]: e["correct"] for e in row["experts"]}
        assert experts["smollm2"] is True
        assert experts["gemma3"] is (row["category"] == "addition")
        assert isinstance(row["methods"]["ours"]["correct"], bool)


def test_list_shows_the_newest_first(served):
    url, _ = served
    ids = [call(url, "POST", "/v1/batches", json={"questions": [f"What is {i} + 1?"]}).json()["id"] for i in range(2)]
    listed = [j["id"] for j in call(url, "GET", "/v1/batches?limit=5").json()["data"]]
    assert listed[:2] == ids[::-1]
    for job_id in ids:
        wait_for(url, job_id)


def test_results_before_the_end_are_409_and_cancel_stops_the_job(tmp_path):
    engines = arithmetic_engines(delay=0.05)
    with serving(make_app(tmp_path, engines, chunk=1)) as url:
        questions = [f"What is {i} + {i}?" for i in range(40)]
        job = call(url, "POST", "/v1/batches", json={"questions": questions}).json()
        wait_for(url, job["id"], states=("running",))
        early = call(url, "GET", f"/v1/batches/{job['id']}/results")
        assert early.status_code == 409 and early.json()["error"]["type"] == "conflict"
        assert "is running" in early.json()["error"]["message"]
        cancelled = call(url, "DELETE", f"/v1/batches/{job['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        time.sleep(0.3)  # the worker sees it between steps
        asked = len(engines.asked())
        time.sleep(0.3)
        assert len(engines.asked()) == asked < 40 * 3  # nothing more was generated
        assert call(url, "DELETE", f"/v1/batches/{job['id']}").json()["state"] == "cancelled"
        after = call(url, "GET", f"/v1/batches/{job['id']}/results")
        assert after.status_code == 409 and "is cancelled" in after.json()["error"]["message"]
        quick = call(url, "POST", "/v1/batches", json={"questions": ["What is 1 + 1?"]}).json()
        wait_for(url, quick["id"])
        late = call(url, "DELETE", f"/v1/batches/{quick['id']}")
        assert late.status_code == 409 and "already done" in late.json()["error"]["message"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_requests_get_their_status_and_one_json_error(served, spec, case):
    url, _ = served
    if "body_repeat" in case:
        head, unit, times, tail = case["body_repeat"]
        content = head + unit * times + tail
    else:
        content = case.get("body", "").replace("{spec}", str(spec)).replace("{spec_folder}", str(spec.parent))
    headers = {"Content-Type": "application/json"} | ({} if case.get("key") == "none" else AUTH)
    reply = httpx.request(case["method"], url + case["path"], content=content.encode(), headers=headers, timeout=30)
    assert reply.status_code == case["status"], reply.text
    error = reply.json()["error"]
    assert error["type"] == case["type"]
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    if "param" in case:
        assert error["param"] == case["param"]
    if "message" in case:
        assert case["message"] in error["message"]
    if "absent" in case:
        assert case["absent"] not in error["message"]


def test_redis_down_is_503_and_readyz_says_so_then_it_comes_back(tmp_path):
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    engines = arithmetic_engines()
    try:
        with serving(make_app(tmp_path, engines, redis.url)) as url:
            first = call(url, "POST", "/v1/batches", json={"questions": ["What is 1 + 2?"]}).json()
            assert wait_for(url, first["id"])["state"] == "done"
            assert call(url, "GET", "/readyz").status_code == 200
            runs = tmp_path / "runs"

            def stored() -> dict[str, tuple[int, int]]:
                return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in runs.iterdir()}

            before = stored()
            assert "generations.v3.sqlite" in before  # the job's checkpoints
            redis.stop()
            for method, path, body in (
                ("POST", "/v1/batches", {"questions": ["What is 2 + 2?"]}),
                ("GET", f"/v1/batches/{first['id']}", None),
                ("GET", f"/v1/batches/{first['id']}/results", None),
            ):
                reply = call(url, method, path, json=body)
                assert reply.status_code == 503, reply.text
                error = reply.json()["error"]
                assert error["type"] == "unavailable" and "is unreachable" in error["message"]
                assert f":{redis.port}" not in reply.text and "127.0.0.1" not in reply.text  # no host, no port
                assert "<the store>" in error["message"]
            ready = call(url, "GET", "/readyz")
            assert ready.status_code == 503 and "is unreachable" in ready.json()["problems"]["jobs"]
            assert str(redis.port) not in ready.text and ready.json()["jobs"]["store"] == "redis"
            sync = call(url, "POST", "/v1/answer", json={"question": "What is 3 + 4?", "aggregation": "majority"})
            assert sync.status_code == 503  # the generation cache lives in the same Redis
            assert "is unreachable" in sync.json()["error"]["message"]
            assert "is unreachable" in ready.json()["problems"]["cache"]
            assert stored() == before  # no SQLite file was touched, none made
            redis.start()
            assert call(url, "GET", "/readyz").status_code == 200
            assert call(url, "GET", f"/v1/batches/{first['id']}").json()["state"] == "done"
            again = call(url, "POST", "/v1/batches", json={"questions": ["What is 5 + 6?"]})
            assert again.status_code == 202
            assert wait_for(url, again.json()["id"])["state"] == "done"
            assert not (runs / "store.sqlite").exists()  # with Redis, no SQLite job store was made
    finally:
        redis.stop()


def test_two_replicas_share_one_redis(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    a_engines, b_engines = arithmetic_engines(), arithmetic_engines()
    try:
        with (
            serving(make_app(tmp_path / "a", a_engines, redis.url)) as a,
            serving(make_app(tmp_path / "b", b_engines, redis.url, workers=0)) as b,
        ):
            questions = [f"What is {i} + 10?" for i in range(5)]
            job = call(a, "POST", "/v1/batches", json={"questions": questions, "aggregation": "majority"}).json()
            seen = call(b, "GET", f"/v1/batches/{job['id']}").json()
            assert seen["id"] == job["id"] and seen["total"] == 5
            assert wait_for(b, job["id"])["state"] == "done"
            from_b = call(b, "GET", f"/v1/batches/{job['id']}/results").json()
            from_a = call(a, "GET", f"/v1/batches/{job['id']}/results").json()
            assert from_a == from_b and len(from_b["results"]) == 5
            assert job["id"] in [j["id"] for j in call(b, "GET", "/v1/batches").json()["data"]]
            assert len(a_engines.asked()) == 10 and b_engines.asked() == []  # B has no worker: A ran it once
            other = call(b, "POST", "/v1/batches", json={"questions": ["What is 7 + 7?"]}).json()
            assert wait_for(a, other["id"])["state"] == "done"  # submitted to B, run by A's worker
    finally:
        redis.stop()
