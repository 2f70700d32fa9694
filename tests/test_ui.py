"""The live page's routes (``/ui``) on the fast tier: a real uvicorn server, the default pool with
fake engines, called with httpx. The key check holds for the page, its assets, its data and the
playground (Bearer, or HTTP Basic with the key as the password, which a browser is asked for);
the page loads nothing from elsewhere; its data shows the traffic, the models, the caller's own
answers (with their traces) and jobs, and spends no request of the rate limit; the playground
streams its batch's steps, the aggregator's text and the answer. ``tests/test_ui_browser.py``
drives the same page in a real Chromium."""

from __future__ import annotations

import base64
import json
import re
import time
from importlib import resources

import httpx
import pytest

from batching import FakeEngine
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from tests.live_server import serving

KEY, OTHER = "key-of-the-page-tests", "another-key-of-the-page-tests"
PAGE = ("/ui", "/ui/assets/ui.js", "/ui/assets/ui.css", "/ui/api/live", "/ui/api/answers/1")


def make_app(tmp_path, **service):
    pool = PROJECT_ROOT / "pools" / "default"
    core = load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20_000, policy="all", cache="off")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY}\n{OTHER}\n")
    settings = ServiceSettings(core=core, api_keys_file=keys, **service)
    engines = Orchestrator(core, engine_factory=lambda spec, cpus=None: FakeEngine(spec))
    return create_app(settings, service=Service(settings, engines))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serving(make_app(tmp_path_factory.mktemp("ui"), gather_ms=0)) as found:
        yield found


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def test_every_part_of_the_page_needs_a_key(url):
    for path in PAGE:
        wrong = ({"Authorization": "Basic !!"}, {"Authorization": f"Token {KEY}"})
        for headers in ({}, bearer("wrong"), basic("wrong"), *wrong):
            refused = httpx.get(f"{url}{path}", headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert refused.json()["error"]["type"] == "unauthorized"
            assert refused.headers["www-authenticate"] == 'Basic realm="symbolic-coe", charset="UTF-8"'
    refused = httpx.post(f"{url}/ui/api/ask", json={"question": "Is it?"})
    assert refused.status_code == 401
    assert httpx.post(f"{url}/v1/answer", json={"question": "Is it?"}).headers["www-authenticate"] == "Bearer"
    for headers in (bearer(), basic(KEY), basic(KEY, user="")):
        assert httpx.get(f"{url}/ui", headers=headers).status_code == 200
    # the browser's Basic credentials work on the API the playground could call too
    answered = httpx.post(f"{url}/v1/answer", json={"question": "Is it?"}, headers=basic(KEY), timeout=30)
    assert answered.status_code == 200


def test_the_page_is_shipped_and_loads_nothing_from_elsewhere(url):
    page = httpx.get(f"{url}/ui", headers=bearer())
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    loaded = sorted(re.findall(r'(?:src|href)="([^"]+)"', page.text))
    assert loaded == ["/ui/assets/ui.css", "/ui/assets/ui.js", "data:,"]
    shipped = resources.files("orchestrator.service") / "assets"
    for name, kind in (("ui.html", None), ("ui.js", "text/javascript"), ("ui.css", "text/css")):
        text = (shipped / name).read_text()
        assert not re.search(r"https?://", text), f"{name} names another site"
        if kind is not None:
            served = httpx.get(f"{url}/ui/assets/{name}", headers=basic(KEY))
            assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
            assert served.text == text
    assert httpx.get(f"{url}/ui/assets/..%2Fstate.py", headers=bearer()).status_code == 404
    assert '"orchestrator.service" = ["assets/*"]' in (PROJECT_ROOT / "pyproject.toml").read_text()  # in the wheel


def test_live_data_shows_traffic_models_and_the_callers_own_answers_and_jobs(url):
    asked = httpx.post(f"{url}/v1/answer", json={"question": "Is a whale a fish?"}, headers=bearer(), timeout=30)
    assert asked.status_code == 200
    job = httpx.post(f"{url}/v1/batches", json={"questions": ["Is 7 prime?", "Is 9 prime?"]}, headers=bearer())
    assert job.status_code == 202
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/v1/batches/{job.json()['id']}", headers=bearer()).json()["state"] != "done":
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)

    live = httpx.get(f"{url}/ui/api/live", headers=bearer()).json()
    assert live["pool"] == "default" and live["policy"] == "all" and "topk" in live["policies"]
    assert live["ready"] and live["queue"]["waiting"] == 0 and live["queue"]["batches"] >= 1
    traffic = live["traffic"]
    assert traffic["per_second_60s"] > 0 and traffic["answered"] >= 1 and traffic["latency"]["p50_ms"] > 0
    models = {m["name"]: m for m in live["models"]}
    assert set(models) == {"gemma3", "smollm2"} and models["smollm2"]["role"] == "aggregator"
    assert {m["state"] for m in models.values()} == {"loaded"} and all(m["loads"] >= 1 for m in models.values())
    mine = next(r for r in live["recent"] if r["question"] == "Is a whale a fish?")
    assert mine["text"] == " ".join(asked.json()["text"].split()) and sorted(mine["experts"]) == ["gemma3", "smollm2"]
    (shown,) = [j for j in live["jobs"] if j["id"] == job.json()["id"]]
    assert shown["state"] == "done" and shown["done"] == shown["total"] == 2

    whole = httpx.get(f"{url}/ui/api/answers/{mine['number']}", headers=basic(KEY)).json()
    assert whole["question"] == "Is a whale a fish?" and whole["answer"] == asked.json()

    theirs = httpx.get(f"{url}/ui/api/live", headers=bearer(OTHER)).json()
    assert all(r["number"] != mine["number"] for r in theirs["recent"]) and theirs["jobs"] == []
    hidden = httpx.get(f"{url}/ui/api/answers/{mine['number']}", headers=bearer(OTHER))
    assert hidden.status_code == 404 and hidden.json()["error"]["type"] == "not_found"


def test_the_page_and_its_data_spend_no_request_of_the_rate_limit(tmp_path):
    with serving(make_app(tmp_path, rate_limit_per_minute=3)) as url:
        for _ in range(10):
            assert httpx.get(f"{url}/ui/api/live", headers=bearer()).status_code == 200
            assert httpx.get(f"{url}/ui/assets/ui.js", headers=bearer()).status_code == 200
        statuses = [httpx.get(f"{url}/v1/models", headers=bearer()).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def events(reply: httpx.Response) -> list[tuple[str, dict]]:
    out = []
    for block in reply.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line.startswith(("event: ", "data: ")))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_the_playground_streams_its_steps_then_the_answer(url):
    body = {"question": "Which?", "options": ["a", "b"], "policy": "topk"}  # the fake experts disagree on it
    reply = httpx.post(f"{url}/ui/api/ask", json={**body, "k": 2}, headers=basic(KEY), timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    got = events(reply)
    kinds = [kind for kind, _ in got]
    assert kinds[0] == "queued" and got[0][1]["policy"] == "topk" and got[0][1]["k"] == 2
    assert kinds[1] == "started" and kinds[-1] == "answer"
    steps = [data["kind"] for kind, data in got if kind == "step"]
    assert steps[:2] == ["route_start", "route_done"] and "phase_start" in steps and "phase_done" in steps
    generated = {data["model"] for kind, data in got if kind == "step" and data["kind"] == "generated"}
    assert generated == {"gemma3", "smollm2"}
    answer = got[-1][1]
    streamed = "".join(data["text"] for kind, data in got if kind == "delta")
    assert (
        answer["trace"]["aggregation"]["method"].startswith("synthesis")
        and streamed
        and answer["text"].startswith(streamed)
    )  # the aggregator's words, as they came
    same = httpx.post(f"{url}/v1/answer", json={**body, "k": 2}, headers=bearer(), timeout=30).json()
    assert (answer["text"], answer["choice"]) == (same["text"], same["choice"])  # one pipeline behind both

    bad = httpx.post(f"{url}/ui/api/ask", json={"question": ""}, headers=bearer())
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "question"
    unknown = httpx.post(f"{url}/ui/api/ask", json={"question": "Is it?", "policy": "nope"}, headers=bearer())
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"
