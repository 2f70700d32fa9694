"""A hostile client against a live server (the default pool with fake engines, unless a test
says otherwise): another key's jobs do not exist for it, listings are pages of summaries, jobs
from before owners are seen only without keys, requests without a good key spend their address's
rate limit, and no response names a server path, host or port (the recordings of a replay pool,
an HTTP expert's endpoint, a benchmark's data). The bodies of every response are scanned for the
server's paths as well (``tests.live_server``); the table of bad requests is
``tests/data/batch_bad_requests.toml``."""

from __future__ import annotations

import json

import httpx
import pytest

from orchestrator import Orchestrator, load_settings
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from orchestrator.stores import JobRequest, open_job_store
from tests import userbench
from tests.live_server import serving
from tests.redis_server import RedisServer
from tests.test_batches import KEY, OTHER_KEY, arithmetic_engines, call, make_app, wait_for

UNKNOWN = "batch_" + "0" * 24


@pytest.fixture(params=["sqlite", "redis"])
def queue_only(request, tmp_path):
    """A live server with two keys and no job worker (jobs stay queued), on SQLite or Redis."""
    redis = RedisServer(tmp_path / "redis").start() if request.param == "redis" else None
    try:
        with serving(make_app(tmp_path, arithmetic_engines(), redis.url if redis else None, workers=0)) as url:
            yield url
    finally:
        if redis is not None:
            redis.stop()


def test_another_keys_job_is_a_job_that_does_not_exist(queue_only):
    url = queue_only
    job = call(url, "POST", "/v1/batches", json={"questions": ["What is 2 + 3?"]}).json()
    for method, suffix in (("GET", ""), ("GET", "/results"), ("DELETE", "")):
        theirs = call(url, method, f"/v1/batches/{job['id']}{suffix}", key=OTHER_KEY)
        nothing = call(url, method, f"/v1/batches/{UNKNOWN}{suffix}", key=OTHER_KEY)
        assert theirs.status_code == nothing.status_code == 404, theirs.text
        assert theirs.json() == json.loads(nothing.text.replace(UNKNOWN, job["id"]))  # word for word
    assert call(url, "GET", f"/v1/batches/{job['id']}").json()["state"] == "queued"  # B's cancel did nothing
    assert [j["id"] for j in call(url, "GET", "/v1/batches").json()["data"]] == [job["id"]]
    assert call(url, "GET", "/v1/batches", key=OTHER_KEY).json()["data"] == []
    page = call(url, "GET", f"/v1/batches?after={job['id']}", key=OTHER_KEY)
    assert page.status_code == 404  # not even as a place to start a page
    assert call(url, "DELETE", f"/v1/batches/{job['id']}").json()["state"] == "cancelled"  # the owner may


def test_listings_are_pages_of_summaries(queue_only):
    url = queue_only
    made = []
    for n in range(3):
        questions = [f"Question {n}.{i}: what is {i} + {n}?" for i in range(2_000)]
        reply = call(url, "POST", "/v1/batches", json={"questions": questions, "policy": "topk", "k": 2})
        assert reply.status_code == 202 and "Question" not in reply.text
        made.append(reply.json()["id"])
    first = call(url, "GET", "/v1/batches?limit=2")
    body = first.json()
    assert [j["id"] for j in body["data"]] == made[:0:-1] and body["has_more"] is True
    assert body["first_id"] == made[2] and body["last_id"] == made[1]
    assert len(first.content) < 2_000 and "Question" not in first.text  # not 2 x 2,000 questions
    assert body["data"][0]["request"] == {
        "benchmark": None,
        "split": None,
        "limit": None,
        "seed": 0,
        "policy": "topk",
        "k": 2,
        "aggregation": "synthesis",
        "max_tokens": None,
    }
    assert body["data"][0]["total"] == 2_000 and "owner" not in body["data"][0] and "worker" not in body["data"][0]
    rest = call(url, "GET", f"/v1/batches?limit=2&after={body['last_id']}").json()
    assert [j["id"] for j in rest["data"]] == [made[0]] and rest["has_more"] is False
    one = call(url, "GET", f"/v1/batches/{made[0]}")
    assert one.json()["total"] == 2_000 and "Question" not in one.text and len(one.content) < 1_000


def test_jobs_from_before_owners_are_seen_only_without_keys(tmp_path):
    store = open_job_store(tmp_path / "runs" / "store.sqlite")
    old = store.create(JobRequest(questions=["What is 1 + 1?"]), 1)  # no owner, as before owners
    store.close()
    with serving(make_app(tmp_path, arithmetic_engines(), workers=0)) as url:
        assert call(url, "GET", f"/v1/batches/{old.id}").status_code == 404
        assert call(url, "GET", "/v1/batches").json()["data"] == []
        owned = call(url, "POST", "/v1/batches", json={"questions": ["What is 2 + 2?"]}).json()
    with serving(make_app(tmp_path, arithmetic_engines(), keys=False, workers=0)) as url:
        listed = [j["id"] for j in httpx.get(f"{url}/v1/batches").json()["data"]]
        assert listed == [owned["id"], old.id]  # without keys every job is everyone's
        assert httpx.get(f"{url}/v1/batches/{old.id}").json()["state"] == "queued"
        assert httpx.delete(f"{url}/v1/batches/{owned['id']}").json()["state"] == "cancelled"


def test_without_keys_every_route_but_healthz_spends_the_address_limit(tmp_path):
    with serving(make_app(tmp_path, arithmetic_engines(), keys=False, rate_limit_per_minute=3, workers=0)) as url:
        for path in ("/readyz", "/metrics", "/v1/batches"):
            assert httpx.get(url + path).status_code == 200, path
        refused = httpx.post(f"{url}/v1/batches", json={"questions": ["What is 2 + 2?"]})
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert httpx.get(f"{url}/readyz").status_code == 429
        assert httpx.get(f"{url}/healthz").status_code == 200  # the liveness probe is never limited


def test_wrong_keys_spend_their_address_limit_not_the_right_keys(tmp_path):
    with serving(make_app(tmp_path, arithmetic_engines(), rate_limit_per_minute=2, workers=0)) as url:
        codes = [call(url, "GET", "/v1/models", key=f"guess-{i}").status_code for i in range(3)]
        assert codes == [401, 401, 429]  # guessing keys is as slow as the limit
        assert httpx.get(f"{url}/v1/models").status_code == 429  # no key at all: the same address
        assert call(url, "GET", "/v1/models").status_code == 200  # the right key has its own bucket
        assert call(url, "GET", "/v1/models", key=OTHER_KEY).status_code == 200


def test_a_replay_miss_names_the_recordings_not_their_path(tmp_path):
    pool = userbench.write_replay_pool(tmp_path / "pool", 4)
    core = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20_000, cache="off")
    settings = ServiceSettings(core=core)
    with serving(create_app(settings, service=Service(settings, Orchestrator(core)))) as url:
        reply = httpx.post(f"{url}/v1/answer", json={"question": "What is 1 + 1?", "id": "never-recorded"}, timeout=60)
        assert reply.status_code in (404, 502), reply.text
        assert str(tmp_path) not in reply.text and "recordings.jsonl" not in reply.text
        assert "never-recorded" in reply.json()["error"]["message"]
    (pool / "recordings.jsonl").unlink()
    with serving(create_app(settings, service=Service(settings, Orchestrator(core)))) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and "recordings missing" in ready.text and str(tmp_path) not in ready.text


def test_an_http_experts_endpoint_is_not_named(tmp_path):
    pool = userbench.write_http_pool(tmp_path / "pool", "http://127.0.0.1:9/v1")  # nothing listens
    core = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20_000, cache="off")
    settings = ServiceSettings(core=core)
    with serving(create_app(settings, service=Service(settings, Orchestrator(core)))) as url:
        reply = httpx.post(f"{url}/v1/answer", json={"question": "What is 1 + 1?"}, timeout=120)
        assert reply.status_code >= 500 and "127.0.0.1:9" not in reply.text, reply.text
        assert "<the endpoint of several experts>" in reply.text  # three experts behind one endpoint


def test_a_benchmark_whose_data_went_away_is_named_not_located(tmp_path):
    spec = userbench.write_benchmark(tmp_path / "bench", 6)
    with serving(make_app(tmp_path, arithmetic_engines(), benchmarks=[spec], workers=0)) as url:
        assert call(url, "POST", "/v1/batches", json={"benchmark": "arith", "limit": 2}).status_code == 202
        (spec.parent / "arith.jsonl.gz").unlink()
        reply = call(url, "POST", "/v1/batches", json={"benchmark": "arith", "limit": 2})
        assert reply.status_code == 404 and str(tmp_path) not in reply.text
        assert "<a benchmark's folder>/arith.jsonl.gz" in reply.json()["error"]["message"]


def test_results_of_a_job_name_the_pool_not_its_folder(tmp_path):
    with serving(make_app(tmp_path, arithmetic_engines())) as url:
        job = call(url, "POST", "/v1/batches", json={"questions": ["What is 4 + 4?"], "aggregation": "majority"})
        assert wait_for(url, job.json()["id"])["state"] == "done"
        results = call(url, "GET", f"/v1/batches/{job.json()['id']}/results")
        assert results.json()["run"]["pool_dir"] == "default" and "pools/default" not in results.text
    assert KEY != OTHER_KEY
