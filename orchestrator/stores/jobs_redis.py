"""Batch jobs in Redis: for several workers and service replicas sharing one queue.

    coe:{jobs}:job:<id>       hash: the job's fields, and ``entry``, its queue entry's id
    coe:{jobs}:results:<id>   the done job's results (gzip'd JSON)
    coe:{jobs}:index          sorted set: job id by creation time (listing)
    coe:{jobs}:owner:<key id> sorted set: the jobs of one API key by creation time (its listing)
    coe:{jobs}:queue          stream: one entry per queued job, read by the group ``workers``

A job's hash keeps its request whole (``request``, for the worker) and without its questions
(``options``, for listings); ``owner`` is the id of the key that made it. Jobs stored before
owners and ``options`` were kept have neither: they are in no owner's index, so only a service
without keys lists them, and their ``options`` are read from ``request``.

Workers read the queue with ``XREADGROUP`` (each entry goes to one consumer and stays pending
until ``XACK``): first entries left idle over ``reclaim_s`` (``XAUTOCLAIM``: their worker died,
or let its job go while Redis was away), then new ones. A running worker keeps its entry's
idle time low with ``XCLAIM ... JUSTID`` to itself in each heartbeat. Every transition that
must see and change the job and its entry together (start, heartbeat, finish, release,
cancel) is one Lua script (``jobs_redis_scripts``), so it is atomic; each first checks, with ``XPENDING``, that the
entry is still pending to this worker.

The reclaim race: a worker stalled (not dead) past ``reclaim_s`` loses its entry to another;
both may run a step at the same time until the stalled one's next heartbeat answers ``lost``
and it stops, writing nothing. That is safe: both read and write the run store's checkpoints
under the job's id, keyed by what was asked, so the answers are the same ones.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.errors import BadInput, Conflict, NotFound, Unavailable
from orchestrator.stores import jobs_redis_scripts as lua
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
)

log = logging.getLogger(__name__)

PREFIX = "coe:{jobs}:"
GROUP = "workers"

_FLOATS = ("created", "updated", "started", "finished")
_INTS = ("total", "done", "attempts")
_SUMMARY_FIELDS = ("id", "state", "options", "error", *_FLOATS, *_INTS)


def _values(raw: dict[str, str], texts: tuple[str, ...]) -> dict[str, Any]:
    """A job's stored fields as the model reads them (numbers parsed, empty ones left out)."""
    values: dict[str, Any] = {k: raw[k] for k in ("id", "state") if k in raw}
    values.update({k: float(raw[k]) for k in _FLOATS if raw.get(k)})
    values.update({k: int(raw[k]) for k in _INTS if raw.get(k)})
    values.update({k: raw[k] for k in texts if raw.get(k)})
    return values


def redacted(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"//[^@/]*@", "//***@", url)


class RedisJobStore:
    """``JobStore`` in the Redis at ``url`` (``redis://host:port/db``). Connects on first use, and
    again after Redis went away and came back."""

    def __init__(self, url: str, *, reclaim_s: float = 60.0, max_attempts: int = 5) -> None:
        self.location = redacted(url)
        self.reclaim_s = reclaim_s
        self.max_attempts = max_attempts
        try:
            self._r = redis.Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                retry=Retry(NoBackoff(), 1),  # one more try on a fresh connection (after a restart)
            )
        except ValueError as exc:
            raise BadInput(f"store URL {self.location} is not a Redis URL: {exc}") from exc
        self._queue = PREFIX + "queue"
        self._index = PREFIX + "index"
        self._group_ready = False
        self._create = self._r.register_script(lua.CREATE)
        self._page = self._r.register_script(lua.PAGE)
        self._start = self._r.register_script(lua.START)
        self._heartbeat = self._r.register_script(lua.HEARTBEAT)
        self._end = self._r.register_script(lua.END)
        self._release = self._r.register_script(lua.RELEASE)
        self._cancel = self._r.register_script(lua.CANCEL)

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._group_ready = False  # a restarted Redis may have lost it
            raise Unavailable(f"job store {self.location} is unreachable: {_one_line(exc)}") from exc
        except redis.RedisError as exc:
            raise Unavailable(f"job store {self.location} failed: {_one_line(exc)}") from exc

    def _key(self, job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    def _results_key(self, job_id: str) -> str:
        return f"{PREFIX}results:{job_id}"

    def _owner_key(self, owner: str) -> str:
        return f"{PREFIX}owner:{owner}"

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._r.xgroup_create(self._queue, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _job(self, job_id: str, fields: dict[bytes, bytes]) -> Job:
        if not fields:
            raise no_such_job(job_id)
        raw = {k.decode(): v.decode() for k, v in fields.items()}
        values = _values(raw, ("error", "worker", "owner"))
        try:
            values["request"] = JobRequest.model_validate_json(raw.get("request", ""))
            return Job.model_validate(values)
        except ValidationError as exc:
            raise BadInput(f"job store {self.location}: job {job_id} is unreadable: {exc.errors()[0]['msg']}") from exc

    def _summary(self, job_id: str, fields: list[bytes | None]) -> JobSummary:
        raw = {k: v.decode() for k, v in zip(_SUMMARY_FIELDS, fields, strict=True) if v is not None}
        values = _values(raw, ("error",))
        try:
            if "options" in raw:
                values["request"] = JobOptions.model_validate_json(raw["options"])
            else:  # a job stored before options were kept
                request = cast(bytes, self._r.hget(self._key(job_id), "request") or b"")
                values["request"] = JobRequest.model_validate_json(request).without_questions
            return JobSummary.model_validate(values)
        except ValidationError as exc:
            raise BadInput(f"job store {self.location}: job {job_id} is unreadable: {exc.errors()[0]['msg']}") from exc

    # -- the API's side ------------------------------------------------------------------------------

    def create(self, request: JobRequest, total: int, owner: str | None = None) -> Job:
        job_id, now = new_job_id(), time.time()
        with self._guard():
            self._ensure_group()
            keys = [self._key(job_id), self._queue, self._index, self._owner_key(owner or "")]
            options = request.without_questions.model_dump_json()
            self._create(keys=keys, args=[job_id, request.model_dump_json(), total, now, options, owner or ""])
        # as made: a worker may have taken it already
        made = {"id": job_id, "state": "queued", "request": request, "total": total, "created": now, "updated": now}
        return Job.model_validate({**made, "owner": owner})

    def get(self, job_id: str) -> Job:
        with self._guard():
            return self._job(job_id, cast(dict, self._r.hgetall(self._key(job_id))))

    def list(self, limit: int = 100, *, caller: str | None = None, after: str | None = None) -> list[JobSummary]:
        index = self._index if caller is None else self._owner_key(caller)
        with self._guard():
            page = self._page(keys=[index], args=[limit, after or ""])
            if page is None:
                raise no_such_job(after or "")
            ids = [i.decode() for i in cast(list, page)]
            pipe = self._r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self._key(job_id), list(_SUMMARY_FIELDS))
            found = pipe.execute()
            return [self._summary(job_id, fields) for job_id, fields in zip(ids, found, strict=True) if fields[0]]

    def cancel(self, job_id: str) -> Job:
        with self._guard():
            state = _text(self._cancel(keys=[self._key(job_id)], args=[time.time()]))
        if state == "missing":
            raise no_such_job(job_id)
        if state in ("done", "failed"):
            raise Conflict(f"batch job {job_id} is already {state}; only a queued or running job is cancelled")
        return self.get(job_id)

    def results(self, job_id: str) -> JobResults:
        job = self.get(job_id)
        if job.state != "done":
            why = f": {job.error}" if job.error else ""
            raise Conflict(f"batch job {job_id} is {job.state}{why}; results are ready once it is done")
        with self._guard():
            blob = self._r.get(self._results_key(job_id))
        if blob is None:
            raise NotFound(f"batch job {job_id} is done but its results are missing from {self.location}")
        return JobResults.unpack(cast(bytes, blob), job_id)

    # -- the workers' side ------------------------------------------------------------------------------

    def claim(self, worker: WorkerId, wait_s: float = 0.0) -> Job | None:
        with self._guard():
            try:
                return self._claim(worker, wait_s)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False  # Redis came back empty: make the group again
                return self._claim(worker, wait_s)

    def _claim(self, worker: WorkerId, wait_s: float) -> Job | None:
        self._ensure_group()
        start: bytes | str = "0-0"
        for _ in range(100):
            found = cast(
                list, self._r.xautoclaim(self._queue, GROUP, worker.name, int(self.reclaim_s * 1000), start, 1)
            )
            for entry, fields in found[1]:
                job = self._take(worker, entry, fields)
                if job is not None:
                    log.info("job %s: taken over by %s (idle over %.0f s)", job.id, worker.name, self.reclaim_s)
                    return job
            start = found[0]
            if _text(start) == "0-0":
                break
        block = int(min(wait_s, 2.0) * 1000) or None  # under the socket timeout
        while True:  # entries of cancelled jobs are acknowledged and passed over
            read = _entries(self._r.xreadgroup(GROUP, worker.name, {self._queue: ">"}, count=1, block=block))
            if not read:
                return None
            for entry, fields in read:
                job = self._take(worker, entry, fields)
                if job is not None:
                    return job

    def _take(self, worker: WorkerId, entry: bytes, fields: dict[bytes, bytes] | None) -> Job | None:
        job_id = (fields or {}).get(b"job")
        if job_id is None:  # deleted from the stream
            self._r.xack(self._queue, GROUP, entry)
            return None
        job_id_text = job_id.decode()
        args: list[str | bytes | float] = [
            GROUP,
            worker.name,
            entry,
            time.time(),
            self.max_attempts,
            abandoned(self.max_attempts, self.max_attempts),
        ]
        outcome = _text(self._start(keys=[self._key(job_id_text), self._queue], args=args))
        if outcome != "running":
            return None
        return self._job(job_id_text, cast(dict, self._r.hgetall(self._key(job_id_text))))

    def heartbeat(self, job_id: str, worker: WorkerId, done: int) -> Lease:
        with self._guard():
            keys = [self._key(job_id), self._queue]
            return cast(Lease, _text(self._heartbeat(keys=keys, args=[GROUP, worker.name, done, time.time()])))

    def finish(self, job_id: str, worker: WorkerId, results: JobResults) -> Lease:
        return self._finish(job_id, worker, "done", "", results.pack(), str(len(results.results)))

    def fail(self, job_id: str, worker: WorkerId, error: str) -> Lease:
        return self._finish(job_id, worker, "failed", " ".join(error.split()) or "failed", b"", "")

    def _finish(self, job_id: str, worker: WorkerId, outcome: str, error: str, blob: bytes, done: str) -> Lease:
        keys = [self._key(job_id), self._queue, self._results_key(job_id)]
        with self._guard():
            answer = self._end(keys=keys, args=[GROUP, worker.name, time.time(), outcome, error, blob, done])
        return cast(Lease, _text(answer))

    def ack(self, job_id: str, worker: WorkerId) -> None:
        self._finish(job_id, worker, "cancelled", "", b"", "")  # leaves a cancelled job's state as it is

    def release(self, job_id: str, worker: WorkerId) -> None:
        with self._guard():
            self._release(keys=[self._key(job_id), self._queue], args=[GROUP, worker.name, time.time(), job_id])

    def check(self) -> None:
        with self._guard():
            self._r.ping()

    def close(self) -> None:
        self._r.close()

    def __repr__(self) -> str:
        return f"RedisJobStore({self.location!r})"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _entries(reply: object) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an ``XREADGROUP`` reply (RESP2: ``[[stream, [(id, fields), ...]], ...]``)."""
    return [(entry, fields) for _, entries in cast(list, reply or []) for entry, fields in entries]


__all__ = ["GROUP", "PREFIX", "RedisJobStore", "redacted"]
