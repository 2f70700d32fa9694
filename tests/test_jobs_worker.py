"""The job worker on its own (fake engines, an SQLite store): a stopped worker hands its job back
after its step and the next worker generates only the rest; a job whose benchmark went away
fails with one line; a store that goes away mid-job makes the worker let the job go, and the
job is taken over later without regenerating anything."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from batching import FakeEngine
from common.errors import ConfigError, Unavailable
from eval import registered_benchmarks
from orchestrator import Orchestrator, load_settings
from orchestrator.jobs_worker import JobWorker
from orchestrator.settings import PROJECT_ROOT, JobSettings
from orchestrator.stores import JobRequest, open_job_store
from tests import userbench


class Engines:
    def __init__(self, after_first=None) -> None:
        self.made: list[FakeEngine] = []
        self.after_first = after_first

    def __call__(self, spec, cpus=None):
        hook = self.after_first

        class Hooked(FakeEngine):
            def generate(self, requests, on_result=None, on_delta=None):
                out = super().generate(requests, on_result, on_delta)
                if hook is not None:
                    hook()
                return out

        self.made.append(Hooked(spec, answer=lambda spec, request: "Final answer: 4"))
        return self.made[-1]

    def asked(self) -> list[str]:
        return [rid for e in self.made for batch in e.batches for rid in batch]


def orchestrator(tmp_path: Path, engines: Engines) -> Orchestrator:
    core = load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=20_000, policy="all"
    )
    return Orchestrator(core, engine_factory=engines)


SETTINGS = JobSettings(chunk=2, heartbeat_s=0.1, reclaim_s=0.5, poll_s=0.1)
QUESTIONS = JobRequest(questions=[f"What is {i} + {i}?" for i in range(6)], aggregation="majority")


def test_a_stopped_worker_hands_back_its_job_after_its_step(tmp_path):
    store = open_job_store(tmp_path / "store.sqlite", reclaim_s=SETTINGS.reclaim_s)
    job = store.create(QUESTIONS, total=6)
    first: JobWorker
    engines = Engines(after_first=lambda: first.stopping.set())  # SIGTERM arrives during the first step
    first = JobWorker(orchestrator(tmp_path, engines), store, SETTINGS, label="first")
    assert first.run_one() == "released"
    assert store.get(job.id).state == "queued"
    made_first = engines.asked()
    assert len(made_first) == 2 * 2  # one step: two questions, two experts

    again = Engines()
    second = JobWorker(orchestrator(tmp_path, again), store, SETTINGS, label="second")
    assert second.run_one() == "done"
    assert len(again.asked()) == 4 * 2  # only the questions the first worker had not answered
    results = store.results(job.id)
    assert [r.question_id for r in results.results] == [q.id for q in second.coe._queries(QUESTIONS.questions)]
    assert all(r.methods["ours"].final == "4" for r in results.results)
    done = store.get(job.id)
    assert done.done == 6 and done.worker == second.me.name and done.attempts == 1


def test_a_job_whose_benchmark_went_away_fails_with_one_line(tmp_path):
    spec = userbench.write_benchmark(tmp_path / "bench", 4)
    store = open_job_store(tmp_path / "store.sqlite")
    job = store.create(JobRequest(benchmark="arith"), total=4)
    known = registered_benchmarks([spec])
    (tmp_path / "bench" / "arith.jsonl.gz").unlink()
    worker = JobWorker(orchestrator(tmp_path, Engines()), store, SETTINGS, benchmarks=known)
    assert worker.run_one() == "failed"
    failed = store.get(job.id)
    assert failed.state == "failed" and "arith.jsonl.gz" in (failed.error or "") and "\n" not in failed.error


def test_a_worker_knows_benchmarks_by_name_only(tmp_path):
    """A job naming a spec file by its path, or a benchmark the worker was not given, fails
    naming the benchmarks it knows; the file is never read."""
    spec = userbench.write_benchmark(tmp_path / "bench", 4)
    store = open_job_store(tmp_path / "store.sqlite")
    by_path = store.create(JobRequest(benchmark=str(spec)), total=4)
    unknown = store.create(JobRequest(benchmark="arith"), total=4)
    worker = JobWorker(orchestrator(tmp_path, Engines()), store, SETTINGS)  # the built-ins only
    assert worker.run_one() == worker.run_one() == "failed"
    for job in (by_path, unknown):
        error = store.get(job.id).error or ""
        assert error.startswith("unknown benchmark") and "mmlu_pro" in error and "arith, " not in error


class Flaky:
    """A real store whose ``finish`` fails as if it were unreachable while ``away`` is set."""

    def __init__(self, store) -> None:
        self.store = store
        self.away = True

    def __getattr__(self, name):
        return getattr(self.store, name)

    def finish(self, *args):
        if self.away:
            raise Unavailable(f"job store {self.store.location} is unreachable: connection refused")
        return self.store.finish(*args)


def test_a_store_that_goes_away_mid_job_gets_the_job_back_later(tmp_path):
    flaky = Flaky(open_job_store(tmp_path / "store.sqlite", reclaim_s=SETTINGS.reclaim_s))
    job = flaky.create(QUESTIONS, total=6)
    engines = Engines()
    worker = JobWorker(orchestrator(tmp_path, engines), flaky, SETTINGS)  # type: ignore[arg-type]
    assert worker.run_one() == "let go"
    assert flaky.get(job.id).state == "running"
    generated = len(engines.asked())
    flaky.away = False
    assert worker.run_one() is None  # not silent long enough yet
    time.sleep(SETTINGS.reclaim_s + 0.2)
    assert worker.run_one() == "done"
    assert len(engines.asked()) == generated  # all read back from the run store
    assert flaky.get(job.id).attempts == 2


def test_the_worker_loop_waits_for_a_store_that_is_away(tmp_path, caplog):
    store = open_job_store("redis://127.0.0.1:1/0")
    worker = JobWorker(orchestrator(tmp_path, Engines()), store, SETTINGS)
    worker.start()
    time.sleep(0.3)
    assert worker.alive
    worker.stop(timeout=5)
    assert not worker.alive
    assert "unreachable" in caplog.text and caplog.text.count("waiting for it") == 1


BAD_JOB_SETTINGS = [
    ({"reclaim_s": 5, "heartbeat_s": 5}, "reclaim_s (5.0) must be over twice heartbeat_s (5.0)"),
    ({"chunk": 0}, "chunk"),
]


@pytest.mark.parametrize(("given", "message"), BAD_JOB_SETTINGS)
def test_job_settings_are_checked(given, message):
    from orchestrator.cli_worker import job_settings

    with pytest.raises(ConfigError, match=re.escape(message)):
        job_settings(**given)
