"""The keys' usage counts and the semantic cache's buckets (orchestrator.stores.usage and
.semantic): one suite run on SQLite and on a real redis-server; both share the SQLite file with
the generation cache and the jobs."""

from __future__ import annotations

import threading
import time

import pytest

from common.errors import Unavailable
from orchestrator.jobs.open import open_job_store
from orchestrator.stores import open_generation_store
from orchestrator.stores.semantic import open_semantic_store
from orchestrator.stores.usage import Spent, open_usage_store
from tests.redis_server import RedisServer

DAY_END = time.time() + 3600


@pytest.fixture(params=["sqlite", "redis"])
def target(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite")
        return
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


def test_usage_adds_per_window_and_reads_zero_for_nothing(target):
    store = open_usage_store(target)
    try:
        assert store.read("k1", ["day:a", "month:a"]) == {"day:a": Spent(), "month:a": Spent()}
        store.add("k1", {"day:a": DAY_END, "month:a": DAY_END}, Spent(1, 10, 5, 0.25))
        store.add("k1", {"day:a": DAY_END, "month:a": DAY_END}, Spent(1, 1, 2, 0.5))
        store.add("k1", {"day:b": DAY_END, "month:a": DAY_END}, Spent(1, 100, 0, 0.0))
        store.add("k2", {"day:a": DAY_END}, Spent(7, 7, 7, 7.0))
        read = store.read("k1", ["day:a", "day:b", "month:a"])
        assert read["day:a"] == Spent(2, 11, 7, 0.75) and read["day:a"].tokens == 18
        assert read["day:b"] == Spent(1, 100, 0, 0.0)
        assert read["month:a"] == Spent(3, 111, 7, 0.75)
        assert store.read("k2", ["day:a"])["day:a"].requests == 7  # another key's count is its own
    finally:
        store.close()


def test_usage_counts_are_shared_and_lose_nothing_under_concurrent_adds(target):
    stores = [open_usage_store(target) for _ in range(2)]  # two replicas of the service

    def spend(store) -> None:
        for _ in range(25):
            store.add("k", {"day:x": DAY_END, "month:x": DAY_END}, Spent(1, 3, 4, 0.5))

    threads = [threading.Thread(target=spend, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        assert store.read("k", ["day:x"])["day:x"] == Spent(100, 300, 400, 50.0)
        store.close()


def test_usage_survives_reopening(target):
    first = open_usage_store(target)
    first.add("k", {"day:r": DAY_END}, Spent(2, 20, 10, 1.0))
    first.close()
    again = open_usage_store(target)
    assert again.read("k", ["day:r"])["day:r"] == Spent(2, 20, 10, 1.0)
    again.ping()
    again.close()


def test_semantic_buckets_keep_the_newest_and_replace_by_id(target):
    store = open_semantic_store(target, keep=3)
    try:
        assert store.entries("b1") == []
        for i in range(5):
            store.add("b1", f"id{i}", f"entry {i}")
            time.sleep(0.002)  # distinct times: newest first is well defined
        store.add("b1", "id4", "entry 4 again")
        store.add("b2", "id0", "another bucket")
        assert store.entries("b1") == ["entry 4 again", "entry 3", "entry 2"]
        assert store.entries("b2") == ["another bucket"]
        store.ping()
    finally:
        store.close()


def test_semantic_entries_expire(target):
    store = open_semantic_store(target, ttl_s=0.3)
    try:
        store.add("b", "one", "soon gone")
        assert store.entries("b") == ["soon gone"]
        time.sleep(0.45)
        assert store.entries("b") == []
    finally:
        store.close()


def test_the_sqlite_file_is_shared_with_the_cache_and_the_jobs(tmp_path):
    """The new tables may come first: the generation store still takes the file as its own."""
    path = tmp_path / "store.sqlite"
    usage = open_usage_store(str(path))
    semantic = open_semantic_store(str(path))
    jobs = open_job_store(str(path))
    cache = open_generation_store(str(path))
    cache.ping()
    usage.add("k", {"day:s": DAY_END}, Spent(1))
    semantic.add("b", "i", "e")
    assert usage.read("k", ["day:s"])["day:s"].requests == 1 and semantic.entries("b") == ["e"]
    for store in (usage, semantic, jobs, cache):
        store.close()


def test_an_unreachable_redis_is_unavailable_naming_no_password(tmp_path):
    server = RedisServer(tmp_path / "redis")  # never started: nothing listens on its port
    url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
    usage = open_usage_store(url)
    semantic = open_semantic_store(url)
    for call in (lambda: usage.read("k", ["day:x"]), lambda: semantic.entries("b"), usage.ping, semantic.ping):
        with pytest.raises(Unavailable) as caught:
            call()
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
