"""Batch jobs in Redis: for several workers and service replicas sharing one queue.

    coe:{jobs}:job:<id>       hash: the job's fields, and ``entry``, its queue entry's id
    coe:{jobs}:results:<id>   the done job's results (gzip'd JSON)
    coe:{jobs}:index          sorted set: job id by creation time (listing)
    coe:{jobs}:queue          stream: one entry per queued job, read by the group ``workers``

Workers read the queue with ``XREADGROUP`` (each entry goes to one consumer and stays pending
until ``XACK``): first entries left idle over ``reclaim_s`` (``XAUTOCLAIM``: their worker died,
or let its job go while Redis was away), then new ones. A running worker keeps its entry's
idle time low with ``XCLAIM ... JUSTID`` to itself in each heartbeat. Every transition that
must see and change the job and its entry together (start, heartbeat, finish, release,
cancel) is one Lua script, so it is atomic; each first checks, with ``XPENDING``, that the
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
from orchestrator.stores.jobs import Job, JobRequest, JobResults, Lease, WorkerId, abandoned, new_job_id

log = logging.getLogger(__name__)

PREFIX = "coe:{jobs}:"
GROUP = "workers"

_OWNED = """
local function owned(queue, group, entry, consumer)
  if not entry then return false end
  local p = redis.call('XPENDING', queue, group, entry, entry, 1)
  return #p > 0 and p[1][2] == consumer
end
local function drop(queue, group, entry)
  redis.call('XACK', queue, group, entry)
  redis.call('XDEL', queue, entry)
end
"""

_CREATE = """
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'request', ARGV[2], 'total', ARGV[3],
           'done', 0, 'created', ARGV[4], 'updated', ARGV[4], 'attempts', 0, 'entry', entry)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return entry
"""

_START = (
    _OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, entry, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local state = redis.call('HGET', job, 'state')
if not state or redis.call('HGET', job, 'entry') ~= entry then drop(queue, group, entry); return 'gone' end
if not owned(queue, group, entry, consumer) then return 'taken' end
if state ~= 'queued' and state ~= 'running' then drop(queue, group, entry); return state end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if attempts > max then
  redis.call('HSET', job, 'state', 'failed', 'error', ARGV[6], 'updated', now, 'finished', now, 'attempts', max)
  drop(queue, group, entry)
  return 'failed'
end
redis.call('HSET', job, 'state', 'running', 'worker', consumer, 'updated', now, 'done', 0)
redis.call('HSETNX', job, 'started', now)
return 'running'
"""
)

_HEARTBEAT = (
    _OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, done, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
local state = redis.call('HGET', job, 'state')
if state ~= 'running' and state ~= 'cancelled' then return 'lost' end
redis.call('XCLAIM', queue, group, consumer, 0, entry, 'JUSTID')
redis.call('HSET', job, 'done', done, 'updated', now)
return state
"""
)

_END = (
    _OWNED
    + """
local job, queue, results = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, now, outcome, err, blob, done = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
local state = redis.call('HGET', job, 'state')
local answer = 'lost'
if state == 'running' then
  if outcome == 'done' then redis.call('SET', results, blob) end
  redis.call('HSET', job, 'state', outcome, 'updated', now, 'finished', now)
  if err ~= '' then redis.call('HSET', job, 'error', err) end
  if done ~= '' then redis.call('HSET', job, 'done', done) end
  answer = 'running'
elseif state == 'cancelled' then
  answer = 'cancelled'
end
drop(queue, group, entry)
return answer
"""
)

_RELEASE = (
    _OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, now, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
if redis.call('HGET', job, 'state') == 'running' then
  local fresh = redis.call('XADD', queue, '*', 'job', id)
  redis.call('HSET', job, 'entry', fresh, 'state', 'queued', 'updated', now)
  if tonumber(redis.call('HGET', job, 'attempts')) > 0 then redis.call('HINCRBY', job, 'attempts', -1) end
end
drop(queue, group, entry)
return 'released'
"""
)

_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'updated', ARGV[1], 'finished', ARGV[1])
  return 'cancelled'
end
return state
"""

_FLOATS = ("created", "updated", "started", "finished")
_INTS = ("total", "done", "attempts")


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
        self._create = self._r.register_script(_CREATE)
        self._start = self._r.register_script(_START)
        self._heartbeat = self._r.register_script(_HEARTBEAT)
        self._end = self._r.register_script(_END)
        self._release = self._r.register_script(_RELEASE)
        self._cancel = self._r.register_script(_CANCEL)

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
            raise NotFound(f"batch job {job_id!r} does not exist")
        raw = {k.decode(): v.decode() for k, v in fields.items()}
        values: dict[str, Any] = {k: raw[k] for k in ("id", "state") if k in raw}
        values.update({k: float(raw[k]) for k in _FLOATS if raw.get(k)})
        values.update({k: int(raw[k]) for k in _INTS if raw.get(k)})
        values.update({k: raw[k] for k in ("error", "worker") if raw.get(k)})
        try:
            values["request"] = JobRequest.model_validate_json(raw.get("request", ""))
            return Job.model_validate(values)
        except ValidationError as exc:
            raise BadInput(f"job store {self.location}: job {job_id} is unreadable: {exc.errors()[0]['msg']}") from exc

    # -- the API's side ------------------------------------------------------------------------------

    def create(self, request: JobRequest, total: int) -> Job:
        job_id, now = new_job_id(), time.time()
        with self._guard():
            self._ensure_group()
            keys = [self._key(job_id), self._queue, self._index]
            self._create(keys=keys, args=[job_id, request.model_dump_json(), total, now])
        # as made: a worker may have taken it already
        return Job.model_validate(
            {"id": job_id, "state": "queued", "request": request, "total": total, "created": now, "updated": now}
        )

    def get(self, job_id: str) -> Job:
        with self._guard():
            return self._job(job_id, cast(dict, self._r.hgetall(self._key(job_id))))

    def list(self, limit: int = 100) -> list[Job]:
        with self._guard():
            ids = [i.decode() for i in cast(list, self._r.zrevrange(self._index, 0, limit - 1))]
            pipe = self._r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._key(job_id))
            found = pipe.execute()
        return [self._job(job_id, fields) for job_id, fields in zip(ids, found, strict=True) if fields]

    def cancel(self, job_id: str) -> Job:
        with self._guard():
            state = _text(self._cancel(keys=[self._key(job_id)], args=[time.time()]))
        if state == "missing":
            raise NotFound(f"batch job {job_id!r} does not exist")
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
