"""A batch job survives SIGKILL: of the ``coe worker`` running it, and of the whole ``coe serve``
running it in its own worker thread, on the SQLite store and on a real Redis. Started again,
the job completes and nothing that had been generated is generated again.

Real processes end to end: a real HTTP server (``tests/answer_server.py``) plays three experts
of a user's benchmark written by the test (``tests/userbench.py``) and logs every answer it
serves; ``coe serve`` and ``coe worker`` run as child processes sharing one runs folder (the
run store of the jobs' checkpoints) and one job store, and are killed with SIGKILL (their
whole process group) once the answer server has served a third of the work.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests import userbench
from tests.redis_server import RedisServer

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = 30
TOTAL = QUESTIONS * len(userbench.EXPERTS)
RECLAIM = ["--reclaim-s", "3", "--heartbeat-s", "0.5"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(r["model"], r["question_id"]) for r in map(json.loads, log.read_text().splitlines())]


def stored_tasks(runs: Path, job_id: str) -> set[str]:
    db = sqlite3.connect(f"file:{runs / 'generations.v3.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return {t for (t,) in db.execute("SELECT task_id FROM generations WHERE run_id = ?", (job_id,))}
    finally:
        db.close()


class World:
    """The answer server, the benchmark, the pool and the environment the coe processes share."""

    def __init__(self, tmp: Path, store: str) -> None:
        self.tmp = tmp
        self.spec = userbench.write_benchmark(tmp / "bench", QUESTIONS)
        port = free_port()
        self.log = tmp / "served.jsonl"
        self.server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "answer_server.py"), str(port), str(self.log), "0.1"],
            start_new_session=True,
        )
        self.pool = userbench.write_http_pool(tmp / "pool", f"http://127.0.0.1:{port}/v1")
        self.runs = tmp / "runs"
        self.env = {
            **os.environ,
            "COE_RUNS_DIR": str(self.runs),
            "COE_LOG_LEVEL": "WARNING",
            "COE_STORE": store,
            "PYTHONPATH": str(ROOT),
        }
        self.processes: list[subprocess.Popen] = []

    def start(self, *argv: str, name: str) -> subprocess.Popen:
        shared = ["--pool", str(self.pool), "--benchmark", str(self.spec)]  # jobs name the benchmark "arith"
        with (self.tmp / f"{name}.log").open("a") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", *argv, *shared],
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=out,
                stderr=out,
            )
        self.processes.append(process)
        return process

    def serve(self, *argv: str) -> str:
        """``coe serve`` on a free port; its base URL once it answers."""
        port = free_port()
        process = self.start("serve", "--port", str(port), "--log-level", "warning", *argv, name="serve")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (self.tmp / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "coe serve did not start"
            time.sleep(0.2)

    def submit(self, url: str) -> str:
        body = {"benchmark": "arith", "policy": "all", "aggregation": "majority"}  # registered with --benchmark
        reply = httpx.post(f"{url}/v1/batches", json=body, timeout=60)
        assert reply.status_code == 202, reply.text
        assert reply.json()["total"] == QUESTIONS
        return reply.json()["id"]

    def kill_at_a_third(self, process: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + 180
        while len(served(self.log)) < TOTAL // 3:
            assert process.poll() is None, (self.tmp / f"{name}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def wait_done(self, url: str, job_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = httpx.get(f"{url}/v1/batches/{job_id}", timeout=30).json()
            if job["state"] not in ("queued", "running"):
                return job
            assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
            time.sleep(0.2)

    def close(self) -> None:
        for process in [*self.processes, self.server]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(params=["sqlite", "redis"])
def world(request, tmp_path) -> Iterator[World]:
    redis = RedisServer(tmp_path / "redis").start() if request.param == "redis" else None
    store = redis.url if redis is not None else str(tmp_path / "store.sqlite")
    made = World(tmp_path, store)
    try:
        yield made
    finally:
        made.close()
        if redis is not None:
            redis.stop()


@contextmanager
def regenerations_counted(world: World, job_id: str) -> Iterator[list]:
    """Yields a list that, after the block, holds what was generated again after the kill."""
    before = stored_tasks(world.runs, job_id)
    served_before = len(served(world.log))
    assert 0 < len(before) < TOTAL
    again: list = []
    yield again
    after = served(world.log)[served_before:]
    again.extend(item for item in after if f"{item[1]}/expert/{item[0]}" in before)


def check_results(url: str, job_id: str) -> None:
    body = httpx.get(f"{url}/v1/batches/{job_id}/results", timeout=60).json()
    assert body["run"]["questions"] == QUESTIONS and len(body["results"]) == QUESTIONS
    for row in body["results"]:
        right = {e["expert"]: e["correct"] for e in row["experts"]}
        assert right["adder"] is (row["category"] == "addition")
        assert right["multiplier"] is (row["category"] == "multiplication")
        assert all(e["error"] is None for e in row["experts"])


def test_a_killed_worker_is_replaced_and_nothing_is_generated_again(world: World) -> None:
    url = world.serve("--job-workers", "0")
    job_id = world.submit(url)
    worker = world.start("worker", "--chunk", "10", *RECLAIM, name="worker")
    world.kill_at_a_third(worker, "worker")
    assert httpx.get(f"{url}/v1/batches/{job_id}").json()["state"] == "running"
    with regenerations_counted(world, job_id) as again:
        world.start("worker", "--chunk", "10", *RECLAIM, name="worker")
        job = world.wait_done(url, job_id)
    assert job["state"] == "done", job
    assert again == [], f"generated again: {again[:5]}"
    assert job["attempts"] == 2 and job["done"] == QUESTIONS
    assert len(stored_tasks(world.runs, job_id)) == TOTAL
    check_results(url, job_id)


def test_a_killed_service_restarted_completes_its_job_without_generating_again(world: World) -> None:
    args = ("--job-reclaim-s", "3", "--job-heartbeat-s", "0.5")
    url = world.serve(*args)
    job_id = world.submit(url)
    world.kill_at_a_third(world.processes[-1], "serve")
    with regenerations_counted(world, job_id) as again:
        url = world.serve(*args)
        job = world.wait_done(url, job_id)
    assert job["state"] == "done", job
    assert again == [], f"generated again: {again[:5]}"
    assert job["attempts"] == 2
    assert len(stored_tasks(world.runs, job_id)) == TOTAL
    check_results(url, job_id)


def test_a_worker_stopped_with_sigterm_hands_its_job_back(world: World) -> None:
    url = world.serve("--job-workers", "0")
    job_id = world.submit(url)
    worker = world.start("worker", "--chunk", "5", *RECLAIM, name="worker")
    deadline = time.monotonic() + 180
    while len(served(world.log)) < TOTAL // 3:
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, (world.tmp / "worker.log").read_text()[-3000:]
    assert "stopped after 1 job(s)" in (world.tmp / "worker.log").read_text()
    assert httpx.get(f"{url}/v1/batches/{job_id}").json()["state"] == "queued"  # at once, for any worker
    with regenerations_counted(world, job_id) as again:
        world.start("worker", "--chunk", "5", *RECLAIM, name="worker")
        job = world.wait_done(url, job_id)
    assert job["state"] == "done" and again == []
    assert job["attempts"] == 1  # a job handed back is not counted as a failed attempt
    check_results(url, job_id)
