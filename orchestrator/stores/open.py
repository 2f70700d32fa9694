"""``open_generation_store``: the store a setting names."""

from __future__ import annotations

from pathlib import Path

from orchestrator.stores.base import GenerationStore
from orchestrator.stores.sqlite_store import SQLiteGenerationStore
from orchestrator.stores.target import store_kind

__all__ = ["open_generation_store"]


def open_generation_store(
    url_or_path: str | Path, ttl_s: float | None = None, max_entries: int | None = None
) -> GenerationStore:
    """A ``redis://``/``rediss://`` URL opens a ``RedisGenerationStore`` (connected on first use);
    anything else is the path of an ``SQLiteGenerationStore`` file. ConfigError (one line) for a
    URL of another scheme, a malformed Redis URL, or a file that is not a generation store.
    ``max_entries`` bounds an SQLite file; Redis keeps what its own ``maxmemory`` policy lets it
    (entries expire after ``ttl_s`` either way)."""
    if isinstance(url_or_path, Path):
        return SQLiteGenerationStore(url_or_path, ttl_s, max_entries=max_entries)
    if store_kind(url_or_path) == "redis":
        from orchestrator.stores.redis_store import RedisGenerationStore

        return RedisGenerationStore(url_or_path, ttl_s)
    return SQLiteGenerationStore(url_or_path, ttl_s, max_entries=max_entries)
