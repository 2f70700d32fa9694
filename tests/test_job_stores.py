"""The job stores' one contract, run on SQLite and on a real redis-server: jobs are created,
claimed by one worker only, kept alive, cancelled, finished, failed, released and taken over
from a worker that is gone; an unreachable store is one ``Unavailable`` line."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from common.errors import BadInput, ConfigError, Conflict, NotFound, Unavailable
from eval.results import ExpertResult, MethodInfo, MethodResult, QuestionResult, RunInfo
from orchestrator.stores import JobRequest, JobResults, JobStore, WorkerId, open_job_store
from orchestrator.stores.jobs_redis import RedisJobStore
from tests.redis_server import RedisServer, need_redis_server

KINDS = ["sqlite", "redis"]
ASK = JobRequest(questions=["What is 2 + 2?", {"question": "Pick one.", "options": ["yes", "no"]}])


@pytest.fixture(params=KINDS)
def opener(request, tmp_path):
    """Opens stores (one per worker, as separate processes would) on one SQLite file or one Redis."""
    opened: list[JobStore] = []
    server = None
    if request.param == "redis":
        server = RedisServer(tmp_path / "redis").start()
        location = server.url
    else:
        location = str(tmp_path / "store.sqlite")

    def open_one(reclaim_s: float = 60.0, max_attempts: int = 5) -> JobStore:
        opened.append(open_job_store(location, reclaim_s=reclaim_s, max_attempts=max_attempts))
        return opened[-1]

    open_one.kind = request.param  # type: ignore[attr-defined]
    open_one.server = server  # type: ignore[attr-defined]
    yield open_one
    for store in opened:
        store.close()
    if server is not None:
        server.stop()


def results_for(job_id: str, n: int = 2) -> JobResults:
    info = RunInfo(
        run_id=job_id,
        benchmark="inline",
        benchmark_version="",
        split="",
        answer_kind="inline",
        pool="p",
        pool_dir="/p",
        policy="all",
        k=None,
        aggregator="majority",
        questions=n,
        questions_in_split=n,
        methods=[MethodInfo(name="ours", description="d", policy="all", aggregation="majority", baseline=False)],
    )
    rows = [
        QuestionResult(
            question_id=f"q{i}",
            benchmark="inline",
            gold=None,
            experts=(ExpertResult(expert="e", text="4", answer="4", correct=None),),
            methods={"ours": MethodResult(experts=("e",), final="4", correct=None, aggregation="majority")},
        )
        for i in range(n)
    ]
    return JobResults(run=info, results=rows)


def test_create_get_list_and_unknown_ids(opener):
    store = opener()
    first = store.create(ASK, total=2)
    second = store.create(ASK.model_copy(update={"policy": "topk"}), total=2)
    assert first.state == "queued" and first.total == 2 and first.done == 0 and first.attempts == 0
    assert store.get(first.id) == first
    assert store.get(second.id).request.policy == "topk"
    assert [j.id for j in store.list()] == [second.id, first.id]
    assert [j.id for j in store.list(limit=1)] == [second.id]
    for call in (store.get, store.cancel, store.results):
        with pytest.raises(NotFound, match="batch_0000 does not exist|'batch_0000' does not exist"):
            call("batch_0000")


def test_each_job_goes_to_one_worker_oldest_first(opener):
    store = opener()
    jobs = [store.create(ASK, total=2) for _ in range(3)]
    a, b = WorkerId.here("a"), WorkerId.here("b")
    got_a = store.claim(a)
    got_b = opener().claim(b)
    assert got_a is not None and got_b is not None
    assert [got_a.id, got_b.id] == [jobs[0].id, jobs[1].id]
    assert got_a.state == "running" and got_a.worker == a.name and got_a.attempts == 1 and got_a.started
    assert store.claim(a).id == jobs[2].id  # type: ignore[union-attr]
    assert store.claim(b, wait_s=0.3) is None


def test_concurrent_workers_never_share_a_job(opener):
    first = opener()
    made = [first.create(ASK, total=1).id for _ in range(24)]
    stores = [opener() for _ in range(6)]
    taken: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        me = WorkerId.here(f"t{i}")
        while (job := stores[i].claim(me, wait_s=0.2)) is not None:
            with lock:
                taken.append(job.id)
            stores[i].finish(job.id, me, results_for(job.id, 1))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(taken) == Counter(made)  # every job once, none twice
    assert {first.get(j).state for j in made} == {"done"}


def test_heartbeat_progress_finish_and_results(opener):
    store = opener()
    job = store.create(ASK, total=2)
    me = WorkerId.here()
    store.claim(me)
    assert store.heartbeat(job.id, me, 1) == "running"
    assert store.get(job.id).done == 1
    with pytest.raises(Conflict, match="is running; results are ready once it is done"):
        store.results(job.id)
    assert store.finish(job.id, me, results_for(job.id)) == "running"
    done = store.get(job.id)
    assert done.state == "done" and done.done == 2 and done.finished is not None
    assert store.results(job.id) == results_for(job.id)
    assert opener().results(job.id).results[1].question_id == "q1"  # another connection reads them too
    with pytest.raises(Conflict, match="already done"):
        store.cancel(job.id)
    assert store.heartbeat(job.id, me, 2) == "lost"
    assert store.claim(me) is None  # a finished job leaves the queue


def test_cancel_queued_and_running_jobs(opener):
    store = opener()
    queued, running = store.create(ASK, total=2), store.create(ASK, total=2)
    assert store.cancel(queued.id).state == "cancelled"
    assert store.cancel(queued.id).state == "cancelled"  # again: still cancelled, no error
    me = WorkerId.here()
    assert store.claim(me).id == running.id  # type: ignore[union-attr]
    assert store.cancel(running.id).state == "cancelled"
    assert store.heartbeat(running.id, me, 1) == "cancelled"
    assert store.finish(running.id, me, results_for(running.id)) == "cancelled"  # too late: nothing kept
    store.ack(running.id, me)
    assert store.get(running.id).state == "cancelled"
    with pytest.raises(Conflict, match="is cancelled"):
        store.results(running.id)
    assert store.claim(me, wait_s=0.2) is None


def test_fail_keeps_one_line_error(opener):
    store = opener()
    job = store.create(ASK, total=2)
    me = WorkerId.here()
    store.claim(me)
    assert store.fail(job.id, me, "benchmark file\n gone") == "running"
    failed = store.get(job.id)
    assert failed.state == "failed" and failed.error == "benchmark file gone"
    with pytest.raises(Conflict, match="is failed: benchmark file gone"):
        store.results(job.id)


def test_release_requeues_at_once(opener):
    store = opener()
    job = store.create(ASK, total=2)
    a, b = WorkerId.here("a"), WorkerId.here("b")
    store.claim(a)
    store.release(job.id, a)
    assert store.get(job.id).state == "queued"
    again = opener().claim(b)
    assert again is not None and again.id == job.id and again.worker == b.name
    assert again.attempts == 1  # a clean hand-back is not counted as an attempt
    assert store.heartbeat(job.id, a, 1) == "lost"


def test_a_silent_worker_loses_its_job_and_cannot_finish_it(opener):
    store = opener(reclaim_s=0.6)
    job = store.create(ASK, total=2)
    slow, other = WorkerId.here("slow"), WorkerId.here("other")
    store.claim(slow)
    assert opener(reclaim_s=0.6).claim(other) is None  # not silent long enough
    time.sleep(0.9)
    taken = opener(reclaim_s=0.6).claim(other)
    assert taken is not None and taken.id == job.id and taken.worker == other.name and taken.attempts == 2
    assert store.heartbeat(job.id, slow, 2) == "lost"
    assert store.finish(job.id, slow, results_for(job.id)) == "lost"
    assert store.get(job.id).state == "running"
    assert store.heartbeat(job.id, other, 1) == "running"


def test_heartbeats_keep_a_job(opener):
    store = opener(reclaim_s=0.6)
    job = store.create(ASK, total=2)
    me, other = WorkerId.here("me"), WorkerId.here("other")
    store.claim(me)
    for _ in range(4):  # 0.8 s in all: over reclaim_s, kept by the heartbeats
        time.sleep(0.2)
        assert store.heartbeat(job.id, me, 1) == "running"
        assert opener(reclaim_s=0.6).claim(other) is None


def test_a_job_whose_workers_keep_dying_is_failed(opener):
    store = opener(reclaim_s=0.3, max_attempts=2)
    job = store.create(ASK, total=2)
    for i in range(2):
        assert store.claim(WorkerId.here(f"doomed{i}")).id == job.id  # type: ignore[union-attr]
        time.sleep(0.45)
    assert store.claim(WorkerId.here("third")) is None
    failed = store.get(job.id)
    assert failed.state == "failed" and failed.error is not None and "abandoned" in failed.error


def test_sqlite_takes_over_from_a_dead_process_at_once(tmp_path):
    store = open_job_store(tmp_path / "store.sqlite", reclaim_s=3600)
    job = store.create(ASK, total=2)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = WorkerId(name="dead:1:w0", pid=child.pid, pid_started=psutil.Process(child.pid).create_time())
    assert store.claim(dead).id == job.id  # type: ignore[union-attr]
    assert store.claim(WorkerId.here("live")) is None  # its process lives
    child.kill()
    child.wait()
    taken = store.claim(WorkerId.here("live"))
    assert taken is not None and taken.id == job.id and taken.attempts == 2
    store.close()


def test_bad_locations(tmp_path):
    with pytest.raises(ConfigError, match=r"scheme 'http' is not redis:// or rediss://"):  # the one URL rule
        open_job_store("http://example.org/store")
    with pytest.raises(BadInput, match="is a directory"):
        open_job_store(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(Unavailable, match="cannot be opened"):
        open_job_store(tmp_path / "file" / "store.sqlite")


def test_unreachable_redis_is_one_unavailable_line():
    need_redis_server()
    store = open_job_store("redis://:secret@127.0.0.1:1/0")
    assert isinstance(store, RedisJobStore) and "secret" not in store.location
    for call in (lambda: store.get("batch_00"), lambda: store.create(ASK, 2), store.check):
        with pytest.raises(Unavailable, match=r"job store redis://\*\*\*@127.0.0.1:1/0 is unreachable") as caught:
            call()
        assert "\n" not in str(caught.value) and "secret" not in str(caught.value)
        assert caught.value.__cause__ is not None


def test_redis_gone_and_back(tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        store = open_job_store(server.url)
        job = store.create(ASK, total=2)
        server.stop()
        with pytest.raises(Unavailable, match="unreachable"):
            store.get(job.id)
        with pytest.raises(Unavailable):
            store.claim(WorkerId.here())
        server.start()
        assert store.get(job.id).state == "queued"  # the same store object, no restart
        assert store.claim(WorkerId.here()).id == job.id  # type: ignore[union-attr]
    finally:
        server.stop()


def test_redis_that_lost_everything_makes_its_queue_again(tmp_path):
    server = RedisServer(tmp_path / "redis").start()  # no persistence
    try:
        store = open_job_store(server.url)
        store.create(ASK, total=2)
        server.stop()
        server.start()
        assert store.claim(WorkerId.here()) is None  # the group is made again, the queue is empty
        fresh = store.create(ASK, total=1)
        assert store.claim(WorkerId.here()).id == fresh.id  # type: ignore[union-attr]
    finally:
        server.stop()


def test_store_location_defaults_to_runs_dir(tmp_path: Path):
    from orchestrator.stores.target import store_location

    assert store_location(None, tmp_path) == str(tmp_path / "store.sqlite")
    assert store_location("redis://h:1/0", tmp_path) == "redis://h:1/0"
