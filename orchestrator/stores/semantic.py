"""Where the semantic cache (``orchestrator.pipeline.semantic``) keeps its answers: buckets of
entries, each bucket holding what was answered under one scope with the same facts.

An entry is text the cache writes and reads (JSON: the question's vector and entities, the
answer); the store only keeps, expires and bounds them. A bucket keeps its ``keep`` newest
entries; an entry older than ``ttl_s`` is not returned. SQLite: the table ``semantic_answers``
in the store's file. Redis: one hash per bucket, ``coe:sem:<bucket>``, its values
``{"at": stored, "entry": ...}``, the hash expiring ``ttl_s`` after its last write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

from common.errors import ConfigError, Unavailable
from orchestrator.stores.base import check_ttl
from orchestrator.stores.target import redacted, store_kind

__all__ = ["RedisSemanticStore", "SQLiteSemanticStore", "SemanticStore", "open_semantic_store"]

T = TypeVar("T")


class SemanticStore(Protocol):
    name: str
    ttl_s: float | None
    keep: int

    def entries(self, bucket: str) -> list[str]:
        """The bucket's live entries, newest first."""

    def add(self, bucket: str, entry_id: str, entry: str) -> None:
        """Keep ``entry`` under ``entry_id`` in the bucket (replacing one of that id), and drop
        the bucket's oldest beyond ``keep``."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


def open_semantic_store(location: str | Path, *, ttl_s: float | None = None, keep: int = 32) -> SemanticStore:
    """Redis for a ``redis://``/``rediss://`` URL, else the SQLite file at ``location``."""
    if isinstance(location, str) and store_kind(location) == "redis":
        return RedisSemanticStore(location, ttl_s=ttl_s, keep=keep)
    return SQLiteSemanticStore(location, ttl_s=ttl_s, keep=keep)


def _check_keep(keep: int) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"a semantic cache bucket must keep at least 1 entry, got {keep!r}")
    return keep


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS semantic_answers (bucket TEXT NOT NULL, id TEXT NOT NULL, entry TEXT NOT NULL, "
    "stored_at REAL NOT NULL, expires_at REAL, PRIMARY KEY (bucket, id))",
    "CREATE INDEX IF NOT EXISTS semantic_answers_expiry ON semantic_answers (expires_at) WHERE expires_at IS NOT NULL",
)


class SQLiteSemanticStore:
    """``SemanticStore`` in the SQLite file ``path`` (WAL mode; made with its folder if missing)."""

    def __init__(self, path: Path | str, *, ttl_s: float | None = None, keep: int = 32) -> None:
        self.path = Path(path).expanduser()
        self.ttl_s = check_ttl(ttl_s)
        self.keep = _check_keep(keep)
        self.name = f"semantic cache {self.path}"
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise ConfigError(f"{self.name} is a directory, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.name} cannot be opened: {exc}") from exc

    def entries(self, bucket: str) -> list[str]:
        sql = (
            "SELECT entry FROM semantic_answers WHERE bucket = ? AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY stored_at DESC LIMIT ?"
        )
        with self._lock:
            try:
                return [row[0] for row in self._db.execute(sql, (bucket, time.time(), self.keep))]
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc

    def add(self, bucket: str, entry_id: str, entry: str) -> None:
        now = time.time()
        expires = now + self.ttl_s if self.ttl_s is not None else None
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO semantic_answers VALUES (?, ?, ?, ?, ?)",
                    (bucket, entry_id, entry, now, expires),
                )
                self._db.execute(
                    "DELETE FROM semantic_answers WHERE bucket = ? AND id NOT IN (SELECT id FROM semantic_answers "
                    "WHERE bucket = ? ORDER BY stored_at DESC LIMIT ?)",
                    (bucket, bucket, self.keep),
                )
                self._db.execute("DELETE FROM semantic_answers WHERE expires_at <= ?", (now,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise Unavailable(f"{self.name} cannot be written: {exc}") from exc

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT 1 FROM semantic_answers LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisSemanticStore:
    """``SemanticStore`` in the Redis at ``url``: one hash per bucket (see the module)."""

    def __init__(self, url: str, *, ttl_s: float | None = None, keep: int = 32, prefix: str = "coe:sem:") -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.url = url
        self.ttl_s = check_ttl(ttl_s)
        self.keep = _check_keep(keep)
        self.prefix = prefix
        self.name = f"semantic cache at {redacted(url)}"
        self._error: type[Exception] = redis.exceptions.RedisError
        try:
            self._client: Any = redis.Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),
            )
        except ValueError as exc:
            raise ConfigError(f"store {redacted(url)!r} is not a usable Redis URL: {exc}") from exc

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (self._error, OSError) as exc:
            raise Unavailable(f"{self.name} could not {what}: {' '.join(str(exc).split())}") from exc

    def _stored(self, bucket: str) -> list[tuple[float, bytes, str]]:
        """(stored at, entry id, entry) of the bucket's live entries, newest first."""
        raw: dict[bytes, bytes] = self._call("read", lambda: self._client.hgetall(self.prefix + bucket))
        oldest = time.time() - self.ttl_s if self.ttl_s is not None else float("-inf")
        found = []
        for entry_id, value in raw.items():
            try:
                kept = json.loads(value)
                at, entry = float(kept["at"]), kept["entry"]
            except (ValueError, KeyError, TypeError):
                continue  # not ours: left for the bucket's expiry
            if at > oldest and isinstance(entry, str):
                found.append((at, entry_id, entry))
        return sorted(found, key=lambda row: row[0], reverse=True)

    def entries(self, bucket: str) -> list[str]:
        return [entry for _, _, entry in self._stored(bucket)[: self.keep]]

    def add(self, bucket: str, entry_id: str, entry: str) -> None:
        name = self.prefix + bucket
        value = json.dumps({"at": time.time(), "entry": entry})
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(name, entry_id, value)
        if self.ttl_s is not None:
            pipe.pexpire(name, max(1, round(self.ttl_s * 1000)))
        pipe.hlen(name)
        *_, size = self._call("write", pipe.execute)
        if size > self.keep:  # drop the oldest, and anything expired or unreadable
            keepers = {entry_id for _, entry_id, _ in self._stored(bucket)[: self.keep]}
            every: list[bytes] = self._call("read", lambda: self._client.hkeys(name))
            stale = [field for field in every if field not in keepers]
            if stale:
                self._call("write", lambda: self._client.hdel(name, *stale))

    def ping(self) -> None:
        self._call("answer PING", self._client.ping)

    def close(self) -> None:
        self._client.close()
