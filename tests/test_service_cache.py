"""The generation cache in ``coe serve`` (fast tier: a real uvicorn server with fake engines):
hits and bad entries in /metrics; a Redis store that goes down and comes back."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import httpx

from tests.live_server import serving
from tests.redis_server import redis_server  # noqa: F401
from tests.test_service import Engines, make_app


def counter(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name + " "))


def test_a_repeated_question_is_answered_from_the_cache_and_counted(tmp_path):
    engines = Engines()
    with serving(make_app(tmp_path, engines)) as url:
        first = httpx.post(f"{url}/v1/answer", json={"question": "Is fire hot?"}, timeout=30)
        asked = len(engines.asked())
        second = httpx.post(f"{url}/v1/answer", json={"question": "Is fire hot?"}, timeout=30)
        metrics = httpx.get(f"{url}/metrics").text
    assert first.status_code == second.status_code == 200
    assert second.json()["text"] == first.json()["text"] and second.json()["trace"]["loads"] == 0
    assert first.json()["trace"]["cache_hits"] == 0 and second.json()["trace"]["cache_hits"] == 3
    assert len(engines.asked()) == asked == 3  # two experts and the aggregation, once
    assert counter(metrics, "coe_cache_hits_total") == 3
    assert counter(metrics, "coe_cache_misses_total") == 3
    assert counter(metrics, "coe_cache_bad_entries_total") == 0


def test_a_bad_entry_is_regenerated_and_counted(tmp_path):
    engines = Engines()
    with serving(make_app(tmp_path, engines)) as url:
        httpx.post(f"{url}/v1/answer", json={"question": "Is ice cold?"}, timeout=30).raise_for_status()
        with closing(sqlite3.connect(tmp_path / "runs" / "store.sqlite")) as db, db:
            db.execute("UPDATE entries SET entry = 'garbage' WHERE rowid = (SELECT min(rowid) FROM entries)")
        again = httpx.post(f"{url}/v1/answer", json={"question": "Is ice cold?"}, timeout=30)
        metrics = httpx.get(f"{url}/metrics").text
    assert again.status_code == 200
    assert counter(metrics, "coe_cache_bad_entries_total") == 1
    assert len(engines.asked()) == 4  # the one bad entry's generation was made again


def test_redis_down_is_503_in_readyz_and_answers_and_back_without_a_restart(tmp_path, redis_server):  # noqa: F811
    engines = Engines()
    app = make_app(tmp_path, engines, store=redis_server.url)
    with serving(app) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        ok = httpx.post(f"{url}/v1/answer", json={"question": "Before?"}, timeout=30)
        assert ok.status_code == 200, ok.text
        redis_server.stop()
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["problems"]["cache"].startswith("redis at <the store> is unreachable")
        assert "cache: redis at <the store>" in ready.json()["error"]["message"]
        assert str(redis_server.port) not in ready.text  # the store's host and port stay on the server
        down = httpx.post(f"{url}/v1/answer", json={"question": "During?"}, timeout=30)
        assert down.status_code == 503, down.text
        error = down.json()["error"]
        assert error["type"] == "unavailable" and "\n" not in error["message"]
        assert error["message"].startswith("redis at <the store> is unreachable")
        assert str(redis_server.port) not in down.text
        assert not (tmp_path / "runs" / "store.sqlite").exists()  # no SQLite store stands in for it
        redis_server.start()
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
        back = httpx.post(f"{url}/v1/answer", json={"question": "During?"}, timeout=30)
        assert back.status_code == 200, back.text
        metrics = httpx.get(f"{url}/metrics").text
    assert 'coe_errors_total{type="unavailable"}' in metrics


def test_two_replicas_on_one_redis_share_the_cache(tmp_path, redis_server):  # noqa: F811
    """What one replica generated, the other answers from the cache: its engines run nothing."""
    first, second = Engines(), Engines()
    app_a = make_app(tmp_path / "a", first, store=redis_server.url)
    app_b = make_app(tmp_path / "b", second, store=redis_server.url)
    with serving(app_a) as url_a, serving(app_b) as url_b:
        made = httpx.post(f"{url_a}/v1/answer", json={"question": "Is basalt a rock?"}, timeout=30)
        reused = httpx.post(f"{url_b}/v1/answer", json={"question": "Is basalt a rock?"}, timeout=30)
        metrics_b = httpx.get(f"{url_b}/metrics").text
    assert made.status_code == reused.status_code == 200
    assert reused.json()["text"] == made.json()["text"]
    assert len(first.asked()) == 3 and second.asked() == []  # replica B generated nothing
    assert reused.json()["trace"]["cache_hits"] == 3 and counter(metrics_b, "coe_cache_hits_total") == 3
