"""Batch jobs in one SQLite file (WAL mode): for workers on one machine.

Claims are made in a ``BEGIN IMMEDIATE`` transaction (one writer at a time across processes),
so two workers never take the same job. Each running job records its worker's name, host, pid
and process start time and a heartbeat the worker refreshes; a running job is taken over when
its worker's process is dead (same host) or its heartbeat is older than ``reclaim_s``.

The tables (``jobs``, ``job_results``) may share their file with other stores' tables. A file
made before jobs had owners gets the ``owner`` column when it is opened (``ALTER TABLE``, once);
its old jobs keep no owner.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from common.errors import BadInput, Conflict, NotFound, Unavailable
from orchestrator.stores.jobs import (
    Job,
    JobOptions,
    JobRequest,
    JobResults,
    JobSummary,
    Lease,
    WorkerId,
    abandoned,
    new_job_id,
    no_such_job,
    process_alive,
    visible,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    worker TEXT,
    host TEXT,
    pid INTEGER,
    pid_started REAL,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS job_results (id TEXT PRIMARY KEY, body BLOB NOT NULL)
"""
_OWNERS = "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq)"
_FIELDS = "id, state, request, total, done, created, updated, started, finished, error, worker, attempts, owner"
_SUMMARY_NAMES: tuple[str, ...] = ("id", "state", "request", "total", "done", "created", "updated", "started")
_SUMMARY_NAMES += ("finished", "error", "attempts")
_SUMMARY = ", ".join(("id", "state", "json_remove(request, '$.questions')", *_SUMMARY_NAMES[3:]))


class SQLiteJobStore:
    """``JobStore`` in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: Path | str, *, reclaim_s: float = 60.0, max_attempts: int = 5) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.reclaim_s = reclaim_s
        self.max_attempts = max_attempts
        if self.path.is_dir():
            raise BadInput(f"job store {self.path} is a directory, not a file")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_owners()
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"job store {self.path} cannot be opened: {exc}") from exc

    def _add_owners(self) -> None:
        """The migration of a file made before jobs had owners: the column, and its index."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "owner" not in columns:
            try:
                self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
                log.info("job store %s: jobs have owners now (its %s old job(s) have none)", self.path, self._count())
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise
        self._db.execute(_OWNERS)

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``); errors become Unavailable."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise Unavailable(f"job store {self.path} cannot be written: {exc}") from exc

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"job store {self.path} cannot be read: {exc}") from exc

    def _job(self, row: tuple) -> Job:
        names = [n.strip() for n in _FIELDS.split(",")]
        values = dict(zip(names, row, strict=True))
        try:
            values["request"] = JobRequest.model_validate_json(values["request"])
            return Job.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise BadInput(
                f"job store {self.path}: job {values['id']} is unreadable: {exc.errors()[0]['msg']}"
            ) from exc

    def _summary(self, row: tuple) -> JobSummary:
        values = dict(zip(_SUMMARY_NAMES, row, strict=True))
        try:
            values["request"] = JobOptions.model_validate_json(values["request"])
            return JobSummary.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise BadInput(
                f"job store {self.path}: job {values['id']} is unreadable: {exc.errors()[0]['msg']}"
            ) from exc

    def _row(self, db: sqlite3.Connection, job_id: str) -> tuple:
        row = db.execute(f"SELECT {_FIELDS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise no_such_job(job_id)
        return row

    # -- the API's side --------------------------------------------------------------------------

    def create(self, request: JobRequest, total: int, owner: str | None = None) -> Job:
        job_id, now = new_job_id(), time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, state, request, total, created, updated, owner)"
                " VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, request.model_dump_json(), total, now, now, owner),
            )
            return self._job(self._row(db, job_id))

    def get(self, job_id: str) -> Job:
        rows = self._read(f"SELECT {_FIELDS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise no_such_job(job_id)
        return self._job(rows[0])

    def list(self, limit: int = 100, *, caller: str | None = None, after: str | None = None) -> list[JobSummary]:
        where: list[str] = []
        args: list[object] = []
        if caller is not None:
            where.append("owner = ?")
            args.append(caller)
        if after is not None:
            found = self._read("SELECT seq, owner FROM jobs WHERE id = ?", (after,))
            if not found or not visible(found[0][1], caller):
                raise no_such_job(after)
            where.append("seq < ?")
            args.append(found[0][0])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {_SUMMARY} FROM jobs {condition} ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [self._summary(row) for row in rows]

    def cancel(self, job_id: str) -> Job:
        with self._tx() as db:
            job = self._job(self._row(db, job_id))
            if job.state in ("done", "failed"):
                raise Conflict(f"batch job {job_id} is already {job.state}; only a queued or running job is cancelled")
            if job.state != "cancelled":
                now = time.time()
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', updated = ?, finished = ? WHERE id = ?", (now, now, job_id)
                )
            return self._job(self._row(db, job_id))

    def results(self, job_id: str) -> JobResults:
        job = self.get(job_id)
        if job.state != "done":
            why = f": {job.error}" if job.error else ""
            raise Conflict(f"batch job {job_id} is {job.state}{why}; results are ready once it is done")
        rows = self._read("SELECT body FROM job_results WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"batch job {job_id} is done but its results are missing from {self.path}")
        return JobResults.unpack(rows[0][0], job_id)

    # -- the workers' side -------------------------------------------------------------------------

    def claim(self, worker: WorkerId, wait_s: float = 0.0) -> Job | None:
        deadline = time.monotonic() + wait_s
        while True:
            job = self._claim_once(worker)
            if job is not None or time.monotonic() >= deadline:
                return job
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _claim_once(self, worker: WorkerId) -> Job | None:
        if not self._read("SELECT 1 FROM jobs WHERE state IN ('queued', 'running') LIMIT 1"):
            return None  # nothing to take: no write lock taken
        now = time.time()
        with self._tx() as db:
            running = db.execute(
                "SELECT id, host, pid, pid_started, heartbeat FROM jobs WHERE state = 'running' ORDER BY seq"
            ).fetchall()
            gone = [row[0] for row in running if self._worker_gone(row[1], row[2], row[3], row[4], now)]
            queued = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq").fetchall()
            for job_id in [*gone, *(q for (q,) in queued)]:
                attempts = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] + 1
                if attempts > self.max_attempts:
                    db.execute(
                        "UPDATE jobs SET state = 'failed', error = ?, updated = ?, finished = ?, attempts = ? "
                        "WHERE id = ?",
                        (abandoned(attempts - 1, self.max_attempts), now, now, attempts - 1, job_id),
                    )
                    continue
                db.execute(
                    "UPDATE jobs SET state = 'running', worker = ?, host = ?, pid = ?, pid_started = ?, heartbeat = ?,"
                    " updated = ?, started = COALESCE(started, ?), attempts = ?, done = 0 WHERE id = ?",
                    (worker.name, worker.host, worker.pid, worker.pid_started, now, now, now, attempts, job_id),
                )
                if job_id in gone:
                    log.info("job %s: taken over by %s (its worker is gone)", job_id, worker.name)
                return self._job(self._row(db, job_id))
        return None

    def _worker_gone(
        self, host: str | None, pid: int | None, started: float | None, beat: float | None, now: float
    ) -> bool:
        if beat is None or now - beat > self.reclaim_s:
            return True
        if host == socket.gethostname() and pid is not None and started is not None:
            return not process_alive(pid, started)
        return False

    def heartbeat(self, job_id: str, worker: WorkerId, done: int) -> Lease:
        now = time.time()
        with self._tx() as db:
            state, owner = self._owner(db, job_id)
            if owner != worker.name or state not in ("running", "cancelled"):
                return "lost"
            db.execute("UPDATE jobs SET heartbeat = ?, updated = ?, done = ? WHERE id = ?", (now, now, done, job_id))
            return "running" if state == "running" else "cancelled"

    def _owner(self, db: sqlite3.Connection, job_id: str) -> tuple[str, str | None]:
        row = db.execute("SELECT state, worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise no_such_job(job_id)
        return row[0], row[1]

    def finish(self, job_id: str, worker: WorkerId, results: JobResults) -> Lease:
        blob = results.pack()
        return self._end(job_id, worker, "done", None, blob, len(results.results))

    def fail(self, job_id: str, worker: WorkerId, error: str) -> Lease:
        return self._end(job_id, worker, "failed", " ".join(error.split()), None, None)

    def _end(
        self, job_id: str, worker: WorkerId, outcome: str, error: str | None, blob: bytes | None, done: int | None
    ) -> Lease:
        now = time.time()
        with self._tx() as db:
            state, owner = self._owner(db, job_id)
            if owner != worker.name or state in ("done", "failed"):
                return "lost"
            if state == "cancelled":
                return "cancelled"
            if blob is not None:
                db.execute("INSERT OR REPLACE INTO job_results VALUES (?, ?)", (job_id, blob))
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, updated = ?, finished = ?, heartbeat = ?,"
                " done = COALESCE(?, done) WHERE id = ?",
                (outcome, error, now, now, now, done, job_id),
            )
            return "running"

    def ack(self, job_id: str, worker: WorkerId) -> None:
        """Nothing to do in SQLite: a cancelled job is never claimed again."""

    def release(self, job_id: str, worker: WorkerId) -> None:
        now = time.time()
        with self._tx() as db:
            state, owner = self._owner(db, job_id)
            if owner == worker.name and state == "running":
                db.execute(
                    "UPDATE jobs SET state = 'queued', heartbeat = NULL, updated = ?, attempts = MAX(attempts - 1, 0)"
                    " WHERE id = ?",
                    (now, job_id),
                )

    def check(self) -> None:
        self._read("SELECT 1 FROM jobs LIMIT 1")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise Unavailable(f"job store {self.path} is not writable")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteJobStore({str(self.path)!r})"


__all__ = ["SQLiteJobStore"]
