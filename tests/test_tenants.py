"""Budgets and use per API key in ``coe serve`` (fast tier: a real uvicorn server with fake
engines, called with the ``openai`` client and the SDK's ``Client``): a spent budget is 429
naming the limit and its reset, and comes back at the reset (a clock the test moves); a key
sees only its own use; budgets hold across a restart on one store and are shared by two
replicas on a real Redis; /metrics counts per key id, never the key."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import openai
import pytest

from common.errors import BudgetExceeded, NotFound
from orchestrator import Client, Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT, JobSettings
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.security import hash_key
from orchestrator.service.state import Service
from tests.live_server import serving
from tests.redis_server import redis_server  # noqa: F401
from tests.test_service import Engines

TIGHT, LOOSE, MONTHLY = "key-with-a-tight-day", "key-without-budgets", "key-with-a-month"
START = datetime(2031, 1, 31, 22, 0, tzinfo=UTC).timestamp()  # two hours before a day and a month end
KEY_FILE = f"""# key  limits
{TIGHT}   tokens_per_day=40 requests_per_minute=1000
{LOOSE}
{hash_key(MONTHLY)}  cost_per_month=0.5
"""


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(tmp_path, clock: Clock, store: str | None = None, engines: Engines | None = None, **service):
    tmp_path.mkdir(parents=True, exist_ok=True)
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY_FILE)
    core = load_settings(
        pool=PROJECT_ROOT / "pools" / "default",
        runs_dir=tmp_path / "runs",
        memory_budget_mb=20_000,
        policy="all",
        cache="off",
        store=store,
    )
    settings = ServiceSettings(core=core, api_keys_file=keys, **service)
    coe = Orchestrator(core, engine_factory=engines or Engines())
    return create_app(settings, service=Service(settings, coe, clock=clock))


def chat(url: str, key: str, question: str = "Is the sea salty?"):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": question}])


def test_a_spent_day_budget_is_429_naming_the_limit_and_comes_back_at_the_reset(tmp_path):
    clock = Clock()
    with serving(make_app(tmp_path, clock)) as url:
        first = chat(url, TIGHT)  # under the limit: answered, and it crosses it
        spent = first.usage.total_tokens
        assert spent > 40
        with pytest.raises(openai.RateLimitError) as caught:
            chat(url, TIGHT)
        error = caught.value.body
        assert error["type"] == "budget_exceeded" and error["param"] == "tokens_per_day"
        assert error["resets_at"] == "2031-02-01T00:00:00Z"
        assert "tokens_per_day is 40 tokens" in error["message"] and f"spent {spent}" in error["message"]
        assert caught.value.response.headers["Retry-After"] == str(2 * 3600)
        chat(url, LOOSE)  # another key is not held back
        clock.now += 2 * 3600 - 1
        with pytest.raises(openai.RateLimitError):
            chat(url, TIGHT)
        clock.now += 1  # midnight, UTC: a new day
        assert chat(url, TIGHT).choices[0].message.content
        with Client(url, api_key=TIGHT) as sdk:
            day, month = sdk.usage().windows
        assert (day.period, day.start, day.requests) == ("day", "2031-02-01T00:00:00Z", 1)
        assert (month.period, month.requests, month.tokens) == ("month", 1, day.tokens)  # February's first


def test_a_month_budget_of_cost_outlasts_the_day_and_the_sdk_raises_its_error(tmp_path):
    clock = Clock()
    with serving(make_app(tmp_path, clock)) as url, Client(url, api_key=MONTHLY) as sdk:
        cost = sdk.answer("Is ice cold?").trace.cost  # the experts' active parameters: 0.135 + 0.27
        assert 0.25 < cost < 0.5
        sdk.answer("Is ice cold?")  # crosses the limit
        with pytest.raises(BudgetExceeded) as caught:
            sdk.answer("Is ice cold?")
        assert caught.value.param == "cost_per_month" and caught.value.retry_after == pytest.approx(2 * 3600, abs=2)
        clock.now += 3 * 3600  # a new day, and a new month
        sdk.answer("Is ice cold?")
        sdk.answer("Is ice cold?")
        clock.now += 86_400  # one day on: still February, whose budget is spent
        with pytest.raises(BudgetExceeded, match="cost_per_month is 0.5 in cost"):
            sdk.answer("Is ice cold?")


def test_usage_shows_each_key_its_own_use_only(tmp_path):
    clock = Clock()
    with serving(make_app(tmp_path, clock)) as url:
        for _ in range(3):
            chat(url, LOOSE)
        with Client(url, api_key=LOOSE) as loose, Client(url, api_key=TIGHT) as tight:
            mine, theirs = loose.usage(), tight.usage()
        assert mine.key == hash_key(LOOSE)[7:19] and theirs.key == hash_key(TIGHT)[7:19]
        assert [w.requests for w in mine.windows] == [3, 3] and mine.windows[0].tokens > 0
        assert [w.requests for w in theirs.windows] == [0, 0] and theirs.windows[0].tokens == 0
        assert mine.limits == {} and theirs.limits == {"tokens_per_day": 40, "requests_per_minute": 1000}
        raw = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {TIGHT}"}).text
        assert mine.key not in raw and LOOSE not in raw and TIGHT not in raw
        assert httpx.get(f"{url}/v1/usage").status_code == 401  # no key, no use
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {LOOSE}"}).text
    assert f'coe_key_requests_total{{key="{mine.key}"}} 3.0' in metrics
    assert f'coe_key_tokens_total{{direction="in",key="{mine.key}"}}' in metrics
    assert LOOSE not in metrics and TIGHT not in metrics and MONTHLY not in metrics


def test_a_service_without_keys_counts_no_use(tmp_path):
    core = load_settings(pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", cache="off")
    settings = ServiceSettings(core=core)
    app = create_app(settings, service=Service(settings, Orchestrator(core, engine_factory=Engines())))
    with serving(app) as url, Client(url) as sdk:
        with pytest.raises(NotFound, match="per API key"):
            sdk.usage()


def test_budgets_hold_across_a_restart_on_the_same_store(tmp_path):
    clock = Clock()
    with serving(make_app(tmp_path, clock)) as url:
        chat(url, TIGHT)
    with serving(make_app(tmp_path, clock)) as url:  # a new process's service, the same SQLite file
        with pytest.raises(openai.RateLimitError, match="tokens_per_day"):
            chat(url, TIGHT)
        with Client(url, api_key=TIGHT) as sdk:
            assert sdk.usage().windows[0].requests == 1


def test_two_replicas_on_one_redis_share_the_budgets(tmp_path, redis_server):  # noqa: F811
    clock = Clock()
    first = make_app(tmp_path / "one", clock, store=redis_server.url)
    second = make_app(tmp_path / "two", clock, store=redis_server.url)
    with serving(first) as one, serving(second) as two:
        chat(one, TIGHT)
        with pytest.raises(openai.RateLimitError, match="tokens_per_day"):
            chat(two, TIGHT)  # spent on the other replica
        chat(two, LOOSE)
        with Client(one, api_key=LOOSE) as sdk:
            assert sdk.usage().windows[0].requests == 1  # counted on the other replica
        clock.now += 2 * 3600
        chat(two, TIGHT)


def finished(url: str, job: str, auth: dict[str, str]) -> dict:
    for _ in range(300):
        view = httpx.get(f"{url}/v1/batches/{job}", headers=auth, timeout=30).json()
        if view["state"] in ("done", "failed"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish: {view}")


def test_a_job_is_charged_to_its_owner_and_a_spent_budget_queues_no_more(tmp_path):
    clock = Clock()
    auth = {"Authorization": f"Bearer {TIGHT}"}
    with serving(make_app(tmp_path, clock)) as url:
        body = {"questions": ["Is the sky blue?", "Is grass green?"], "aggregation": "majority"}
        made = httpx.post(f"{url}/v1/batches", json=body, headers=auth, timeout=30)
        assert made.status_code == 202, made.text
        assert finished(url, made.json()["id"], auth)["state"] == "done"
        with Client(url, api_key=TIGHT) as sdk:
            day = sdk.usage().windows[0]
        assert day.requests == 2 and day.tokens > 40
        refused = httpx.post(f"{url}/v1/batches", json=body, headers=auth, timeout=30)
        assert refused.status_code == 429 and refused.json()["error"]["param"] == "tokens_per_day"


def test_a_job_that_spends_its_budget_midway_fails_naming_the_limit(tmp_path):
    clock = Clock()
    auth = {"Authorization": f"Bearer {TIGHT}"}
    with serving(make_app(tmp_path, clock, jobs=JobSettings(chunk=1))) as url:
        body = {"questions": ["Is the sky blue?", "Is grass green?", "Is snow white?"], "aggregation": "majority"}
        made = httpx.post(f"{url}/v1/batches", json=body, headers=auth, timeout=30)
        view = finished(url, made.json()["id"], auth)
        with Client(url, api_key=TIGHT) as sdk:
            day = sdk.usage().windows[0]
    assert view["state"] == "failed" and "budget exceeded: tokens_per_day is 40 tokens" in view["error"]
    assert day.requests == 1  # the first step crossed the limit; the second was not run
