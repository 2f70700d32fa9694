"""``open_job_store``: the job queue a setting names (one URL parser: ``stores.target``)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.stores.jobs import JobStore
from orchestrator.stores.target import store_kind


def open_job_store(location: str | Path, *, reclaim_s: float = 60.0, max_attempts: int = 5) -> JobStore:
    """The job store at ``location``: Redis for a ``redis://``/``rediss://`` URL, else an SQLite
    file path (ConfigError, one line, for a URL of another scheme or a malformed Redis URL).

    ``reclaim_s``: a running job whose worker has been silent this long is taken over.
    ``max_attempts``: a job taken this many times (its workers kept dying) is failed."""
    if isinstance(location, str) and store_kind(location) == "redis":
        from orchestrator.stores.jobs_redis import RedisJobStore

        return RedisJobStore(location, reclaim_s=reclaim_s, max_attempts=max_attempts)
    from orchestrator.stores.jobs_sqlite import SQLiteJobStore

    return SQLiteJobStore(Path(location), reclaim_s=reclaim_s, max_attempts=max_attempts)


__all__ = ["open_job_store"]
