"""Jobs have owners, on SQLite and on a real redis-server: a job keeps the id of the key that
made it; a listing shows one owner's jobs (or every job, for a service without keys), a page
at a time, as summaries without their questions; stores made before owners were kept are read
(their jobs have no owner, so only a keyless listing shows them)."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import redis

from common.errors import NotFound
from orchestrator.stores import JobRequest, open_job_store
from orchestrator.stores.jobs import JobSummary, visible
from orchestrator.stores.jobs_redis import PREFIX
from tests.redis_server import RedisServer

BIG = JobRequest(questions=[f"Question number {i}: what is {i} + {i}?" for i in range(500)], policy="topk", k=2)
SMALL = JobRequest(questions=["What is 2 + 2?"], aggregation="majority")


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    server = RedisServer(tmp_path / "redis").start() if request.param == "redis" else None
    opened = open_job_store(server.url if server else str(tmp_path / "store.sqlite"))
    opened.kind = request.param  # type: ignore[attr-defined]
    opened.server = server  # type: ignore[attr-defined]
    yield opened
    opened.close()
    if server is not None:
        server.stop()


def test_the_visibility_rule():
    assert visible("alice", "alice") and not visible("alice", "bob")
    assert visible("alice", None) and visible(None, None)  # a service without keys: everyone's
    assert not visible(None, "alice")  # a job from before owners: no key sees it


def test_a_job_keeps_its_owner_and_listings_show_each_owner_theirs(store):
    a1 = store.create(SMALL, 1, owner="alice")
    b1 = store.create(SMALL, 1, owner="bob")
    a2 = store.create(BIG, 500, owner="alice")
    nobody = store.create(SMALL, 1)
    assert store.get(a1.id).owner == "alice" and store.get(nobody.id).owner is None
    assert [j.id for j in store.list(caller="alice")] == [a2.id, a1.id]
    assert [j.id for j in store.list(caller="bob")] == [b1.id]
    assert store.list(caller="carol") == []
    assert [j.id for j in store.list()] == [nobody.id, a2.id, b1.id, a1.id]  # no keys: every job


def test_listings_are_summaries_without_the_questions(store):
    job = store.create(BIG, 500, owner="alice")
    (listed,) = store.list(caller="alice")
    assert isinstance(listed, JobSummary) and listed.id == job.id and listed.total == 500
    assert listed.request.policy == "topk" and listed.request.k == 2
    assert "questions" not in listed.model_dump() and "Question number" not in listed.model_dump_json()
    assert "owner" not in listed.model_dump() and "worker" not in listed.model_dump()
    assert len(listed.model_dump_json()) < 600
    assert store.get(job.id).summary() == listed  # the one view of a job


def test_pages_follow_after(store):
    made = [store.create(SMALL, 1, owner="alice").id for _ in range(5)]
    store.create(SMALL, 1, owner="bob")
    newest_first = made[::-1]
    first = store.list(2, caller="alice")
    second = store.list(2, caller="alice", after=first[-1].id)
    third = store.list(2, caller="alice", after=second[-1].id)
    assert [j.id for j in first + second + third] == newest_first
    assert store.list(2, caller="alice", after=made[0]) == []
    bobs = store.list(caller="bob")[0].id
    for caller, after in (("alice", bobs), ("alice", "batch_0000"), ("bob", made[2])):
        with pytest.raises(NotFound, match="does not exist"):
            store.list(2, caller=caller, after=after)  # another's job is no place to start from


def test_an_old_sqlite_store_gets_owners_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "store.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
            request TEXT NOT NULL, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
            updated REAL NOT NULL, started REAL, finished REAL, error TEXT, worker TEXT, host TEXT, pid INTEGER,
            pid_started REAL, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE job_results (id TEXT PRIMARY KEY, body BLOB NOT NULL);
        """
    )
    now = time.time()
    old.execute(
        "INSERT INTO jobs (id, state, request, total, created, updated) VALUES (?, 'queued', ?, 1, ?, ?)",
        ("batch_0123456789abcdef01234567", SMALL.model_dump_json(), now, now),
    )
    old.commit()
    old.close()
    store = open_job_store(path)
    again = open_job_store(path)  # a second process opening it: the column is added once
    fresh = store.create(SMALL, 1, owner="alice")
    assert store.get("batch_0123456789abcdef01234567").owner is None
    assert [j.id for j in store.list()] == [fresh.id, "batch_0123456789abcdef01234567"]
    assert [j.id for j in again.list(caller="alice")] == [fresh.id]  # the old job is no key's
    store.close()
    again.close()


def test_an_old_redis_job_is_read_and_listed_only_without_keys(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url)
        old_id, now = "batch_00000000000000000000beef", time.time()
        fields = {"id": old_id, "state": "done", "request": SMALL.model_dump_json(), "total": 1, "done": 1}
        client.hset(f"{PREFIX}job:{old_id}", mapping={**fields, "created": now, "updated": now, "attempts": 1})
        client.zadd(f"{PREFIX}index", {old_id: now})
        store = open_job_store(server.url)
        fresh = store.create(SMALL, 1, owner="alice")
        listed = store.list()
        assert [j.id for j in listed] == [fresh.id, old_id]
        assert listed[1].request.aggregation == "majority"  # read from the whole request
        assert store.get(old_id).owner is None
        assert [j.id for j in store.list(caller="alice")] == [fresh.id]
        stored = json.loads(client.hget(f"{PREFIX}job:{fresh.id}", "options") or b"{}")
        assert "questions" not in stored and stored["aggregation"] == "majority"
        store.close()
    finally:
        server.stop()
