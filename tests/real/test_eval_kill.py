"""``coe eval`` killed with SIGKILL mid-run continues with ``--resume``: nothing it had stored is
generated again, and its results and report are those of a run never interrupted.

Real processes end to end: a real HTTP server (``tests/answer_server.py``) plays three experts
of a user's benchmark written by the test (``tests/userbench.py``) and logs every answer it
serves; ``coe eval`` runs as a child process and is killed with SIGKILL (its whole process
group) once the server has served a third of the work.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import userbench

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = 30
COST_SECTION = "## Cost of this run"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [(r["model"], r["question_id"], r["seed"]) for r in map(json.loads, log.read_text().splitlines())]


def stored_tasks(out: Path) -> set[str]:
    db = sqlite3.connect(f"file:{out / 'generations.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return {task for (task,) in db.execute("SELECT task_id FROM generations")}
    finally:
        db.close()


def coe_eval(spec: Path, pool: Path, out: Path, env: dict, *extra: str) -> subprocess.Popen:
    """``coe eval`` in a child process of its own group; its output goes to ``out``.log."""
    argv = [sys.executable, "-m", "orchestrator.cli", "eval", str(spec), "--pool", str(pool)]
    argv += ["--aggregator", "majority", "--baselines", "--whole-split", "--samples", "2", "--out", str(out), *extra]
    with out.with_suffix(".log").open("a") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)


def finish(process: subprocess.Popen, out: Path) -> None:
    process.wait(timeout=300)
    assert process.returncode == 0, out.with_suffix(".log").read_text()[-2000:]


def comparable(out: Path) -> tuple[str, list[dict]]:
    """The report above its cost section, and the results without generation seconds."""
    report = (out / "report.md").read_text().split(COST_SECTION)[0]
    rows = []
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        for expert in row["experts"]:
            expert["seconds"] = 0.0
        for method in row["methods"].values():
            method["seconds"] = 0.0
        rows.append(row)
    return report, rows


def test_killed_eval_resumes_without_regenerating(tmp_path: Path) -> None:
    spec = userbench.write_benchmark(tmp_path / "bench", QUESTIONS)
    port = free_port()
    log = tmp_path / "served.jsonl"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "answer_server.py"), str(port), str(log), "0.15"],
        start_new_session=True,
    )
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs"), "COE_LOG_LEVEL": "WARNING"}
    try:
        pool = userbench.write_http_pool(tmp_path / "pool", f"http://127.0.0.1:{port}/v1")
        total = QUESTIONS * len(userbench.EXPERTS) * 2  # two samples each

        # a run killed once the server has answered about a third of the work
        out = tmp_path / "killed"
        child = coe_eval(spec, pool, out, env)
        deadline = time.monotonic() + 180
        while len(served(log)) < total // 3:
            assert child.poll() is None, out.with_suffix(".log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the eval never got going"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert not (out / "results.jsonl").exists()
        before = stored_tasks(out)
        served_before = len(served(log))
        assert 0 < len(before) < total

        # the same command with --resume finishes it
        finish(coe_eval(spec, pool, out, env, "--resume"), out)
        again = served(log)[served_before:]
        regenerated = [item for item in again if f"{item[1]}/s{1 if item[2] else 0}/expert/{item[0]}" in before]
        assert regenerated == [], f"generated again: {regenerated[:5]}"
        run = json.loads((out / "run.json").read_text())
        assert run["reused"] == len(before)
        assert run["reused"] + run["generations"] == total
        assert len(stored_tasks(out)) == total

        # a run never interrupted gives the same results and report
        fresh = tmp_path / "fresh"
        finish(coe_eval(spec, pool, fresh, env), fresh)
        assert comparable(out) == comparable(fresh)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
