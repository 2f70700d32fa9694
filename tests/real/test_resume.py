"""A batch run killed with SIGKILL resumes without regenerating anything it had finished.

The parent test starts a real child process (this file run as a script) that runs a plan
with a SQLite run store, watches the store, and SIGKILLs the child's whole process group
mid-run. A second child finishes the run. Every generate call of both children is logged
(request ids, flushed per call), so the test can assert that the second run generated
exactly the tasks the store did not hold, and that the stored rows were not rewritten.

Two variants: recorded experts only (replay engines, each load indexes the recordings),
and recorded experts + SmolLM2 on real vLLM as expert and aggregator (killed while vLLM
generates the aggregations).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.real

RUN_ID = "kill-test"
REPLAY_MODELS = ("Qwen1.5-7B-Chat", "Yi-6b-Chat")


# -- the child: build the same workload every time, run it, log every generate call ----------


def question_ids(replay_file: Path, questions: int) -> list[str]:
    """The first ``questions`` MMLU-Pro ids that every replay expert recorded (read in the parent)."""
    from common.recordings import ReplayBook

    book = ReplayBook(replay_file)  # not the shared one: the parent must not warm anything up
    recorded = set.intersection(*(set(book.records(m)) for m in REPLAY_MODELS))
    return sorted(recorded, key=int)[:questions]


def workload(replay_file: Path, chosen: list[str], with_vllm: bool, max_tokens: int):
    """The same specs, tasks and composer in every process (the child reads no recordings here)."""
    from aggregators import SynthesisJob, SynthesisOptions, compose
    from batching import ExpertSpec
    from common.requests import Request
    from common.tasks import Task
    from eval.benchmarks import get_benchmark

    specs = {
        m.lower(): ExpertSpec(
            name=m.lower(),
            source={"kind": "replay", "path": replay_file, "model": m, "benchmark": "mmlu_pro"},
            memory_mb=1500,
        )
        for m in REPLAY_MODELS
    }
    if with_vllm:
        specs["smollm2"] = ExpertSpec(
            name="smollm2", source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"}, memory_mb=1800
        )
    aggregator = "smollm2" if with_vllm else REPLAY_MODELS[0].lower()
    bench = get_benchmark("mmlu_pro")
    by_id = {q.id: q for q in bench.questions(replay_file.parents[1]) if q.id in set(chosen)}
    rng = random.Random(7)
    tasks, jobs = [], {}
    for qid in chosen:
        prompt = bench.prompt(by_id[qid])
        ids = []
        for name in rng.sample(sorted(specs), 2):
            ids.append(f"{qid}/{name}")
            tasks.append(
                Task(
                    id=ids[-1],
                    model=name,
                    request=Request.user(ids[-1], prompt, question_id=qid, max_tokens=max_tokens),
                )
            )
        tasks.append(Task(id=f"{qid}/final", model=aggregator, after=tuple(ids)))
        jobs[f"{qid}/final"] = SynthesisJob(question_text=prompt, answer_format=bench.answer_format, question_id=qid)
    return specs, tasks, compose(jobs, SynthesisOptions(max_tokens=max_tokens, order="given"))


def child(argv: Sequence[str]) -> int:
    replay_file, store_path, calls_path, ids_path, with_vllm, max_tokens, cache_dir = argv
    from batching.engines import make_engine
    from batching.executor import Executor
    from batching.plan import make_plan
    from batching.runstore import SQLiteRunStore

    chosen = json.loads(Path(ids_path).read_text())
    specs, tasks, composer = workload(Path(replay_file), chosen, with_vllm == "1", int(max_tokens))
    log = open(calls_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run

    class Logged:
        def __init__(self, spec):
            self.spec, self.engine = spec, make_engine(spec, cache_dir=Path(cache_dir))

        @property
        def loaded(self):
            return self.engine.loaded

        def load(self):
            self.engine.load()
            self._write({"load": self.spec.name})

        def generate(self, requests, on_result=None):
            out = self.engine.generate(requests, on_result)
            self._write({"generated": [r.id for r in requests], "model": self.spec.name})
            return out

        def unload(self):
            self.engine.unload()

        def footprint_mb(self):
            return self.engine.footprint_mb()

        def _write(self, row):
            log.write(json.dumps({"pid": os.getpid(), **row}) + "\n")
            log.flush()
            os.fsync(log.fileno())

    plan = make_plan(tasks, specs, budget_mb=2000)
    store = SQLiteRunStore(store_path)
    result = Executor(Logged, store=store).run(plan, tasks, specs, composer, run_id=RUN_ID)
    store.close()
    log.write(json.dumps({"pid": os.getpid(), "done": result.metrics.model_dump(), "failed": result.failed}) + "\n")
    log.close()
    return 0


# -- the parent ----------------------------------------------------------------------------------


def start(replay_file: Path, tmp: Path, with_vllm: bool, cache_dir: Path) -> subprocess.Popen:
    args = [
        str(replay_file),
        str(tmp / "run.sqlite"),
        str(tmp / "calls.jsonl"),
        str(tmp / "questions.json"),
        "1" if with_vllm else "0",
        "24",
        str(cache_dir),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp / f"child-{time.time_ns()}.log", "w") as output:
        return subprocess.Popen(
            [sys.executable, __file__, *args],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stored(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT task_id, finished_at FROM generations WHERE run_id = ?", (RUN_ID,)))
    except sqlite3.OperationalError:  # the child has not created the table yet
        return {}
    finally:
        db.close()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""

    alive = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the child and everything it started (vLLM workers), and wait until all are gone."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while group_members(process.pid):
        if time.monotonic() > deadline:
            pytest.fail(f"processes {group_members(process.pid)} of group {process.pid} survived SIGKILL")
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.2)


def calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kill_and_resume(
    replay_file: Path,
    tmp: Path,
    *,
    questions: int,
    with_vllm: bool,
    cache_dir: Path,
    kill_when: str,
    timeout_s: float,
) -> None:
    chosen = question_ids(replay_file, questions)
    (tmp / "questions.json").write_text(json.dumps(chosen))
    specs, tasks, _ = workload(replay_file, chosen, with_vllm, 24)
    everything = {t.id for t in tasks}
    experts = {t.id for t in tasks if not t.after}
    aggregator = next(t.model for t in tasks if t.after)
    first_phase_models = {t.model for t in tasks if t.model != aggregator}
    threshold = {
        # replay only: the first replay model's phase is stored; the second is still indexing
        "first_phase": lambda rows: bool(rows) and any(t.split("/")[1] in first_phase_models for t in rows),
        # with vLLM: every expert answer is stored; SmolLM2 is writing the aggregations
        "experts_done": lambda rows: experts <= set(rows),
    }[kill_when]

    first = start(replay_file, tmp, with_vllm, cache_dir)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            rows = stored(tmp / "run.sqlite")
            if threshold(rows):
                break
            assert first.poll() is None, f"the child ended (rc={first.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "the child made no progress in time"
            time.sleep(0.02)
    finally:
        started = descendants(first.pid)  # vLLM engines lead process groups of their own
        kill_group(first)
    assert first.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10  # nothing the killed run started outlives it by 10 s
    while left := [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"processes of the killed run still alive: {[p.pid for p in left]}"
        time.sleep(0.2)
    before = stored(tmp / "run.sqlite")
    assert before and set(before) < everything, "the kill must land mid-run"
    killed_pid = first.pid

    second = start(replay_file, tmp, with_vllm, cache_dir)
    try:
        second.wait(timeout=timeout_s)
    finally:
        if second.poll() is None:
            kill_group(second)
    assert second.returncode == 0, (tmp / "calls.jsonl").read_text()[-2000:]

    log = calls(tmp / "calls.jsonl")
    regenerated = [rid for row in log if row["pid"] == second.pid for rid in row.get("generated", [])]
    assert set(regenerated).isdisjoint(before), "the resumed run regenerated stored work"
    assert sorted(regenerated) == sorted(everything - set(before))  # and nothing twice
    after = stored(tmp / "run.sqlite")
    assert set(after) == everything
    assert {t: after[t] for t in before} == before  # stored rows were not rewritten
    done = next(row for row in log if row["pid"] == second.pid and "done" in row)
    assert done["failed"] == {} and done["done"]["resumed"] == len(before)
    loaded_again = {row["load"] for row in log if row["pid"] == second.pid and "load" in row}
    finished_models = {name for name in specs if all(t.id in before for t in tasks if t.model == name)}
    assert loaded_again.isdisjoint(finished_models)  # a model with nothing left is not loaded
    assert any(row["pid"] == killed_pid for row in log)


def test_killed_replay_run_resumes_without_regenerating(replay_file, tmp_path):
    kill_and_resume(
        replay_file,
        tmp_path,
        questions=40,
        with_vllm=False,
        cache_dir=tmp_path / "cache",
        kill_when="first_phase",
        timeout_s=120,
    )


def test_killed_vllm_run_resumes_without_regenerating(replay_file, tmp_path, cache_dir):
    import vllm  # noqa: F401  (the real tier needs vLLM: a missing install fails, never skips)

    kill_and_resume(
        replay_file,
        tmp_path,
        questions=24,
        with_vllm=True,
        cache_dir=cache_dir,
        kill_when="experts_done",
        timeout_s=600,
    )


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
