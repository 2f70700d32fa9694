"""Batch jobs over REST, timed: a 1,000-question replay job submitted to ``coe serve``.

    python benchmarks/jobs.py              # print the figures
    python benchmarks/jobs.py --write      # also write benchmarks/results/jobs.json
    python benchmarks/jobs.py --limit 200  # a smaller job

For each job store (SQLite, then a real ``redis-server`` started here), ``coe serve`` runs on
the replay pool (recorded answers of six real models; majority vote, so no live model) with
its own worker thread, and the job ``{"benchmark": "mmlu_pro", "split": "test", "limit": N,
"aggregation": "majority"}`` is submitted twice. Each is timed from the POST to the state
``done`` (polled every 0.1 s). The first is cold (the recordings are indexed, the questions
embedded for routing); the second asks the same questions as a new job: its generations are
checkpointed under its own job id, so it reads nothing back from the first, and what it
gains comes from the warm service (recordings indexed, embeddings cached) only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "jobs.json"
REPLAY_POOL = ROOT / "pools" / "replay-small"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway ``redis-server`` (no persistence) and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


class Served:
    """``coe serve`` on the replay pool as a child process, stopped with SIGTERM at the end."""

    def __init__(self, store: str, runs: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "orchestrator.cli", "serve", "--pool", str(REPLAY_POOL), "--port", port]
        command += ["--store", store, "--log-level", "warning"]
        env = {**os.environ, "COE_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        started = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"coe serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 600:
                raise SystemExit("coe serve did not get ready")
            time.sleep(0.2)
        self.start_s = time.perf_counter() - started

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def one_job(url: str, limit: int) -> dict:
    """Submit the job, wait for it, read its results; the figures."""
    body = {"benchmark": "mmlu_pro", "split": "test", "limit": limit, "aggregation": "majority"}
    started = time.perf_counter()
    reply = httpx.post(f"{url}/v1/batches", json=body, timeout=600)
    reply.raise_for_status()
    submit_s = time.perf_counter() - started
    job_id = reply.json()["id"]
    while True:
        job = httpx.get(f"{url}/v1/batches/{job_id}", timeout=60).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    wall_s = time.perf_counter() - started
    if job["state"] != "done":
        raise SystemExit(f"job {job_id} ended {job['state']}: {job.get('error')}")
    fetched = time.perf_counter()
    results = httpx.get(f"{url}/v1/batches/{job_id}/results", timeout=600)
    results_s = time.perf_counter() - fetched
    run = results.json()["run"]
    rows = results.json()["results"]
    right = sum(bool(r["methods"]["ours"]["correct"]) for r in rows)
    return {
        "job": job_id,
        "questions": len(rows),
        "experts_per_question": round(sum(len(r["experts"]) for r in rows) / len(rows), 2),
        "submit_s": round(submit_s, 2),
        "wall_s": round(wall_s, 2),
        "questions_per_s": round(len(rows) / wall_s, 1),
        "worker_stage_s": run["stage_seconds"],
        "results_fetch_s": round(results_s, 2),
        "results_bytes": len(results.content),
        "accuracy_ours": round(right / len(rows), 4),
    }


def measure(kind: str, limit: int, folder: Path) -> dict:
    redis = None
    if kind == "redis":
        redis, store = start_redis(folder)
    else:
        store = str(folder / "store.sqlite")
    served = Served(store, folder / "runs")
    try:
        cold = one_job(served.url, limit)
        again = one_job(served.url, limit)
    finally:
        served.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    print(f"{kind}: cold {cold['wall_s']} s, same questions again (new job) {again['wall_s']} s", file=sys.stderr)
    return {"store": kind, "service_ready_s": round(served.start_s, 1), "cold": cold, "again": again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/jobs.json")
    parser.add_argument("--limit", type=int, default=1000, help="questions in the job")
    args = parser.parse_args()
    figures = []
    for kind in ("sqlite", "redis"):
        with tempfile.TemporaryDirectory(prefix=f"coe-jobs-{kind}-") as tmp:
            figures.append(measure(kind, args.limit, Path(tmp)))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, cpu",
        "pool": "replay-small",
        "job": {"benchmark": "mmlu_pro", "split": "test", "limit": args.limit, "aggregation": "majority"},
        "policy": "the service's default (all: six experts per question)",
        "note": (
            "'again' is a new job on the same questions: checkpoints are kept per job id, so nothing is read "
            "back from the first job; it gains only from the warm service (recordings indexed, embeddings cached)."
        ),
        "stores": figures,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
