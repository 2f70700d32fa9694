"""The batch job worker: claim a job, answer its questions through the batch planner a step
(``JobSettings.chunk`` questions) at a time, write its results, take the next.

Every step is ``Orchestrator.answer_batch(..., run_id=job.id)``: each generation is checkpointed
in the run store under the job's id as it finishes, so a job taken over from a dead worker
(or run again after a crash of the whole service) reads back what was made and generates only
the rest. Between steps the worker reports progress and learns whether the job was cancelled
or taken over; a heartbeat thread reports every ``heartbeat_s`` while a step runs.

``stop()`` (SIGTERM) lets the step in flight finish, then hands the job back to the queue. A
store that goes away mid-job (Redis down) makes the worker let the job go as it is: it is taken
over (by this worker or another) once the store is back and the job has been silent
``reclaim_s``; nothing generated is lost.

With a ``meter`` (the service's keys' budgets), the job's owner is checked before each step (a
spent budget fails the job, naming the limit; what was generated stays in the run store for a
new job after the reset) and charged for each step's answers. A step run again after a
takeover is charged again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from common.errors import CoeError, Unavailable
from eval import BENCHMARKS, Benchmark
from orchestrator.jobs.questions import job_questions, job_result, now_text, run_info
from orchestrator.jobs.queue import Job, JobResults, JobStore, Lease, WorkerId
from orchestrator.pipeline.trace import Answer
from orchestrator.pools.settings import JobSettings
from orchestrator.sdk import Orchestrator

log = logging.getLogger(__name__)


class Meter(Protocol):
    """What a job's owner may spend and has spent (``orchestrator.service.tenants.Tenants``)."""

    def check(self, key: str | None) -> None:
        """Raise (a ``CoeError``) when ``key`` may not spend more now."""

    def charge(self, key: str | None, answers: Sequence[Answer]) -> None:
        """Count ``answers`` against ``key``."""


class _Beat:
    """Reports ``done`` for the job every ``every`` seconds; keeps the store's last answer."""

    def __init__(self, store: JobStore, job_id: str, worker: WorkerId, every: float) -> None:
        self.store, self.job_id, self.worker, self.every = store, job_id, worker, every
        self.done = 0
        self.lease: Lease = "running"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> Lease:
        try:
            self.lease = self.store.heartbeat(self.job_id, self.worker, self.done)
        except Unavailable as exc:
            log.warning("job %s: heartbeat failed: %s", self.job_id, exc)
        return self.lease

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class JobWorker:
    """Runs jobs from ``store`` on ``coe`` (a warm one in ``coe serve``: the engines are shared
    with the service's requests, one batch at a time)."""

    def __init__(
        self,
        coe: Orchestrator,
        store: JobStore,
        settings: JobSettings,
        *,
        benchmarks: Mapping[str, Benchmark] = BENCHMARKS,
        label: str = "w0",
        meter: Meter | None = None,
    ) -> None:
        self.coe = coe
        self.store = store
        self.settings = settings
        self.benchmarks = benchmarks
        """The benchmarks a job may name (``eval.registered_benchmarks``)."""
        self.meter = meter
        """The owners' budgets (None: nobody's are counted)."""
        self.me = WorkerId.here(label)
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.ran: list[tuple[str, str]] = []
        """(job id, how it ended: done, failed, cancelled, lost, released or let go) of each job run."""

    # -- the loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve jobs in a thread until ``stop()``."""
        self._thread = threading.Thread(target=self.serve, name=f"job worker {self.me.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the step in flight, hand its job back, and end the loop."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def serve(self) -> None:
        """Claim and run jobs until ``stop()``; a store that is away is waited for."""
        log.info("job worker %s: serving jobs from %s", self.me.name, self.store.location)
        away = False
        while not self.stopping.is_set():
            try:
                job = self.store.claim(self.me, wait_s=self.settings.poll_s)
            except Unavailable as exc:
                if not away:
                    log.warning("job worker %s: %s; waiting for it", self.me.name, exc)
                away = True
                self.stopping.wait(self.settings.poll_s)
                continue
            if away:
                log.warning("job worker %s: the job store is back", self.me.name)
                away = False
            if job is not None:
                self.run(job)

    def run_one(self, wait_s: float = 0.0) -> str | None:
        """Claim one job and run it (tests, scripts); how it ended, or None if there was none."""
        job = self.store.claim(self.me, wait_s=wait_s)
        return self.run(job) if job is not None else None

    # -- one job -------------------------------------------------------------------------------------

    def run(self, job: Job) -> str:
        """Run a claimed job to its end; returns how it ended."""
        log.info("job %s: started by %s (%d question(s), attempt %d)", job.id, self.me.name, job.total, job.attempts)
        beat = _Beat(self.store, job.id, self.me, self.settings.heartbeat_s)
        beat.start()
        try:
            ended = self._work(job, beat)
        except Unavailable as exc:
            log.warning("job %s: let go, the store is away (%s); it is taken over once it is back", job.id, exc)
            ended = "let go"
        except CoeError as exc:
            ended = self._fail(job, str(exc))
        except Exception as exc:  # a bug: the job fails with its kind, the log has the details
            log.exception("job %s: unexpected error", job.id)
            ended = self._fail(job, f"internal error ({type(exc).__name__})")
        finally:
            beat.stop()
        log.info("job %s: %s", job.id, ended)
        self.ran.append((job.id, ended))
        return ended

    def _fail(self, job: Job, error: str) -> str:
        try:
            lease = self.store.fail(job.id, self.me, error)
        except Unavailable as exc:
            log.warning("job %s: failed (%s) but the store is away: %s", job.id, error, exc)
            return "let go"
        return "failed" if lease == "running" else lease

    def _work(self, job: Job, beat: _Beat) -> str:
        started, began = now_text(), time.perf_counter()
        request = job.request
        asked = job_questions(request, self.coe.settings, self.benchmarks)
        questions = asked.questions
        answers: list[Answer] = []
        loads = 0
        step = self.settings.chunk
        for start in range(0, len(questions), step):
            if beat.lease != "running":
                return self._let_go(job, beat.lease)
            if self.stopping.is_set():
                self.store.release(job.id, self.me)
                return "released"
            if self.meter is not None:
                self.meter.check(job.owner)
            part = self.coe.answer_batch(
                questions[start : start + step],
                benchmark=asked.benchmark,
                policy=request.policy,
                k=request.k,
                aggregation=request.aggregation,
                max_tokens=request.max_tokens,
                run_id=job.id,
            )
            if self.meter is not None:
                self.meter.charge(job.owner, part)
            loads += part[0].trace.loads if part else 0
            answers += part
            beat.done = len(answers)
            beat.beat()
        if beat.lease != "running":
            return self._let_go(job, beat.lease)
        generated = time.perf_counter() - began
        costs = {name: spec.cost for name, spec in self.coe.pool.specs.items()}
        results = [
            job_result(answer, query, asked.benchmark, request.aggregation, costs)
            for answer, query in zip(answers, questions, strict=True)
        ]
        info = run_info(
            job,
            asked,
            answers,
            pool=self.coe.pool,
            policy=request.policy or self.coe.settings.policy,
            stage_seconds={"generate": round(generated, 3), "total": round(time.perf_counter() - began, 3)},
            model_loads=loads,
            started=started,
        )
        lease = self.store.finish(job.id, self.me, JobResults(run=info, results=results))
        return "done" if lease == "running" else self._let_go(job, lease)

    def _let_go(self, job: Job, lease: Lease) -> str:
        if lease == "cancelled":
            self.store.ack(job.id, self.me)
            return "cancelled"
        return "lost"  # taken over: the other worker finishes it


__all__ = ["JobWorker"]
