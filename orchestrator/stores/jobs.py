"""Batch jobs: the ``Job`` record, what a job asks (``JobRequest``), its results, and the
``JobStore`` protocol that SQLite (``jobs_sqlite``) and Redis (``jobs_redis``) implement.

A job's life: ``create`` (queued) -> a worker's ``claim`` (running) -> ``heartbeat`` after each
step and every few seconds (progress; the answer says whether the job was cancelled or taken
over) -> ``finish`` (done, with results), ``fail`` (failed), ``ack`` (let go of a cancelled job)
or ``release`` (SIGTERM: queued again at once). ``cancel`` may come at any time before the end.

A worker that dies leaves its job running: ``claim`` takes it over once the store sees the
worker gone (SQLite: its process is dead or its heartbeat is older than ``reclaim_s``; Redis:
the stream entry has been idle that long, ``XAUTOCLAIM``). Taking over is safe even in a race
(a worker that was only slow, not dead): every generation of a job is checkpointed in the run
store under the job's id, keyed by what was asked, so the new worker reads back what the old
one made, a generation made by both is the same answer, and a worker that learns it lost its
job (``heartbeat``/``finish`` answer ``lost``) stops without writing anything.

The run store is the SQLite file under ``runs_dir``: workers share its checkpoints when they
share that folder (one machine). A worker on another machine taking over a job regenerates
what the dead one had made, until the generations are kept in a store the machines share.

Owners: a job made on a service with API keys keeps the id of the key that made it (the first
hex digits of the key's SHA-256 digest, never the key), and only that key sees it (``visible``).
Jobs stored before owners were kept have none: a service with keys shows them to nobody, one
without keys to everyone. A job holds at most ``MAX_JOB_QUESTIONS`` questions.
"""

from __future__ import annotations

import gzip
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import BadInput, NotFound
from common.query import MAX_NAME_CHARS, MAX_OPTIONS
from common.vocabulary import Aggregation
from eval.results import QuestionResult, RunInfo

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_STATES: tuple[JobState, ...] = ("done", "failed", "cancelled")
Lease = Literal["running", "cancelled", "lost"]
"""What a worker learns from a heartbeat: carry on, stop (cancelled), or stop (taken over)."""

JOB_ID_PREFIX = "batch_"


class JobQuestion(BaseModel):
    """One question of a job given inline: multiple-choice when ``options`` are given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(..., min_length=1, description="The question.")
    options: list[str] | None = Field(None, max_length=MAX_OPTIONS, description="Choices, lettered A, B, ...")
    id: str | None = Field(None, min_length=1, max_length=200, description="The question's id (unique in the job).")


MAX_JOB_QUESTIONS = 10_000
"""Most questions one job may hold: inline, a benchmark's sample (``limit``) or its whole split."""

MAX_SEED = 2**63 - 1


class JobOptions(BaseModel):
    """How a job asks, without its questions: what the service shows of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_CHARS, description="A benchmark the service names (never a path)."
    )
    split: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_CHARS, description="The benchmark's split (default: its own)."
    )
    limit: int | None = Field(
        None, ge=1, le=MAX_JOB_QUESTIONS, description="A sample of this many (stratified by category, seeded)."
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the sample.")
    policy: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_CHARS, description="Routing policy; the service's default when absent."
    )
    k: int | None = Field(None, ge=1, le=64, description="Experts per question for policies that take k.")
    aggregation: Aggregation = Field("synthesis", description="Aggregator model or majority vote.")
    max_tokens: int | None = Field(None, ge=1, le=8192, description="Most tokens the final answer may have.")


class JobRequest(JobOptions):
    """What a job asks: its questions (inline, or a benchmark's split with a seeded sample of
    ``limit``) and how to answer them. Results of a benchmark job are scored with its check."""

    questions: list[str | JobQuestion] | None = Field(
        None,
        min_length=1,
        max_length=MAX_JOB_QUESTIONS,
        description="The questions, inline (plain or with options); or give benchmark.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JobRequest:
        if (self.questions is None) == (self.benchmark is None):
            raise ValueError("give either questions (inline) or benchmark, not both and not neither")
        if self.questions is not None:
            extra = [name for name in ("split", "limit") if getattr(self, name) is not None]
            if extra:
                raise ValueError(f"{' and '.join(extra)} apply to a benchmark, not to inline questions")
        return self

    @property
    def without_questions(self) -> JobOptions:
        """How the job asks, its questions left out."""
        return JobOptions.model_validate(self.model_dump(exclude={"questions"}))


class JobSummary(BaseModel):
    """What the service shows of a job (``GET /v1/batches``, ``GET /v1/batches/{id}``): its state and
    how it asks, never its question texts, its owner or its worker's host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    state: JobState
    request: JobOptions = Field(..., description="How the job asks; its questions are not repeated.")
    total: int = Field(..., ge=0, description="Questions in the job.")
    done: int = Field(0, ge=0, description="Questions answered so far by the worker running it.")
    created: datetime
    updated: datetime
    started: datetime | None = Field(None, description="When a worker first took it.")
    finished: datetime | None = None
    error: str | None = Field(None, description="Why it failed.")
    attempts: int = Field(0, ge=0, description="Times a worker took it (more than one: taken over).")


class Job(BaseModel):
    """One batch job as the store keeps it (its whole request; its owner and worker)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    state: JobState
    request: JobRequest
    owner: str | None = Field(
        None, description="The id of the API key that made it (see visible); None: made without keys, or before owners."
    )
    total: int = Field(..., ge=0, description="Questions in the job.")
    done: int = Field(0, ge=0, description="Questions answered so far by the worker running it.")
    created: datetime
    updated: datetime
    started: datetime | None = Field(None, description="When a worker first took it.")
    finished: datetime | None = None
    error: str | None = Field(None, description="Why it failed.")
    worker: str | None = Field(None, description="The worker running it, or that ran it last.")
    attempts: int = Field(0, ge=0, description="Times a worker took it (more than one: taken over).")

    def summary(self) -> JobSummary:
        shown = self.model_dump(exclude={"request", "owner", "worker"})
        return JobSummary.model_validate({**shown, "request": self.request.without_questions})


def visible(owner: str | None, caller: str | None) -> bool:
    """Whether ``caller`` (an API key's id; None on a service without keys) may see a job of
    ``owner``: without keys every job is everyone's; with keys a caller sees only the jobs its key
    made, so a job made before owners were kept (owner None) is seen only without keys."""
    return caller is None or owner == caller


def no_such_job(job_id: str) -> NotFound:
    """The one answer for a job that does not exist or is another key's (the two look the same)."""
    shown = job_id if len(job_id) <= 100 else job_id[:100] + "..."
    return NotFound(f"batch job {shown!r} does not exist")


class JobResults(BaseModel):
    """A finished job's results, in the ``coe eval`` format: ``run.json`` and ``results.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    run: RunInfo
    results: list[QuestionResult]

    def pack(self) -> bytes:
        return gzip.compress(self.model_dump_json().encode(), compresslevel=5)

    @classmethod
    def unpack(cls, blob: bytes, job_id: str) -> JobResults:
        try:
            return cls.model_validate_json(gzip.decompress(blob))
        except (OSError, EOFError, ValidationError, ValueError) as exc:
            raise BadInput(f"the stored results of job {job_id} are unreadable: {str(exc).splitlines()[0]}") from exc


def new_job_id() -> str:
    return JOB_ID_PREFIX + uuid.uuid4().hex[:24]


def is_job_id(text: str) -> bool:
    rest = text.removeprefix(JOB_ID_PREFIX)
    return text.startswith(JOB_ID_PREFIX) and 0 < len(rest) <= 64 and all(c in "0123456789abcdef" for c in rest)


@dataclass(frozen=True)
class WorkerId:
    """Who runs a job: a name unique among live workers, and the process behind it (host, pid
    and the process's start time, so a reused pid is not taken for the same process)."""

    name: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_started: float = field(default_factory=lambda: psutil.Process().create_time())

    @classmethod
    def here(cls, label: str = "w0") -> WorkerId:
        """This process's worker ``label`` (``host:pid:label``)."""
        return cls(f"{socket.gethostname()}:{os.getpid()}:{label}")


def process_alive(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (on this host)."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


@runtime_checkable
class JobStore(Protocol):
    """Batch jobs and their queue. Every method raises ``Unavailable`` (one line, ``from`` the
    driver's error) when the store cannot be reached, ``NotFound`` for an unknown job id."""

    location: str
    """Where the store is, for messages (a Redis URL without its password, or a file path)."""

    def create(self, request: JobRequest, total: int, owner: str | None = None) -> Job:
        """A new queued job of ``owner`` (an API key's id; None: a service without keys)."""
        ...

    def get(self, job_id: str) -> Job:
        """Any job, whoever owns it (the service checks ``visible`` before it shows one)."""
        ...

    def list(self, limit: int = 100, *, caller: str | None = None, after: str | None = None) -> list[JobSummary]:
        """The newest ``limit`` jobs ``caller`` may see (``visible``; None: every job), after the job
        ``after`` when given (``NotFound`` if that is not one of them): read without their questions."""
        ...

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a cancelled one stays so); ``Conflict`` once it is
        done or failed. A running job stops after the worker's current step."""
        ...

    def results(self, job_id: str) -> JobResults:
        """A done job's results; ``Conflict`` naming its state otherwise."""
        ...

    def claim(self, worker: WorkerId, wait_s: float = 0.0) -> Job | None:
        """The next job for ``worker``, now running under its name: one whose worker is gone
        (taken over), else the oldest queued one; None if there is none within ``wait_s``."""
        ...

    def heartbeat(self, job_id: str, worker: WorkerId, done: int) -> Lease:
        """``worker`` still runs the job and has answered ``done`` questions."""
        ...

    def finish(self, job_id: str, worker: WorkerId, results: JobResults) -> Lease:
        """Store the results and mark the job done (if it is still the worker's and running)."""
        ...

    def fail(self, job_id: str, worker: WorkerId, error: str) -> Lease:
        """Mark the job failed with ``error`` (if it is still the worker's and running)."""
        ...

    def ack(self, job_id: str, worker: WorkerId) -> None:
        """The worker lets go of a job it will not finish (cancelled): it leaves the queue."""
        ...

    def release(self, job_id: str, worker: WorkerId) -> None:
        """The worker stops (SIGTERM): its running job is queued again for any worker, at once."""
        ...

    def check(self) -> None:
        """Raise ``Unavailable`` if the store cannot be used now."""
        ...

    def close(self) -> None: ...


def abandoned(attempts: int, max_attempts: int) -> str:
    return f"abandoned: taken {attempts} times (max_attempts {max_attempts}); its workers died or stopped"


__all__ = [
    "FINAL_STATES",
    "MAX_JOB_QUESTIONS",
    "MAX_NAME_CHARS",
    "Job",
    "JobOptions",
    "JobQuestion",
    "JobRequest",
    "JobResults",
    "JobState",
    "JobStore",
    "JobSummary",
    "Lease",
    "WorkerId",
    "abandoned",
    "is_job_id",
    "new_job_id",
    "no_such_job",
    "process_alive",
    "visible",
]
