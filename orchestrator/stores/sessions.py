"""Session state (what session affinity remembers of a conversation), kept where the generations
are: one table of the SQLite store file, or keys of the Redis that replicas share, so every
replica agrees on a session's experts. Every entry expires ``ttl_s`` seconds after it was last
written (an expired entry reads as missing; SQLite deletes expired rows as it writes, Redis by
itself).

Values are opaque text to the store (the pipeline writes JSON); keys are digests the pipeline
makes (never a user's own words).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from common.errors import ConfigError, Unavailable
from orchestrator.stores.target import redacted, store_kind

__all__ = ["RedisSessionStore", "SQLiteSessionStore", "SessionSlot", "SessionStore", "open_session_store"]

log = logging.getLogger(__name__)

SESSION_TABLE = "sessions"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {SESSION_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)"
)
T = TypeVar("T")


@runtime_checkable
class SessionStore(Protocol):
    """Session state by key, each entry expiring ``ttl_s`` after its last write."""

    name: str
    ttl_s: float

    def get(self, key: str) -> str | None:
        """The value kept under ``key``; None when there is none or it expired."""

    def put(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` for ``ttl_s`` seconds from now (replacing what was there)."""

    def close(self) -> None:
        """Let go of connections and files."""


def _check_ttl(ttl_s: float) -> float:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0:
        raise ConfigError(f"session_ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return float(ttl_s)


class SQLiteSessionStore:
    """Session state in the table ``sessions`` of the SQLite file ``path`` (the generation store's
    file by default; the table is made when missing, and other stores' tables are left alone)."""

    def __init__(self, path: Path | str, ttl_s: float, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.ttl_s = _check_ttl(ttl_s)
        self.name = f"session store {self.path}"
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise ConfigError(f"{self.name} is a directory, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            with suppress(Exception):
                self._db.close()
            raise ConfigError(f"{self.name} cannot be opened: {exc}") from exc

    def get(self, key: str) -> str | None:
        with self._lock:
            try:
                row = self._db.execute(
                    f"SELECT value FROM {SESSION_TABLE} WHERE key = ? AND expires_at > ?", (key, time.time())
                ).fetchone()
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc
        return row[0] if row is not None else None

    def put(self, key: str, value: str) -> None:
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    f"INSERT OR REPLACE INTO {SESSION_TABLE} VALUES (?, ?, ?)", (key, value, now + self.ttl_s)
                )
                self._db.execute(f"DELETE FROM {SESSION_TABLE} WHERE expires_at <= ?", (now,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise Unavailable(f"{self.name} cannot be written: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteSessionStore({str(self.path)!r}, ttl_s={self.ttl_s!r})"


class RedisSessionStore:
    """Session state in the Redis at ``url``: one key per session under ``prefix``, with PX expiry."""

    def __init__(
        self,
        url: str,
        ttl_s: float,
        prefix: str = "coe:session:",
        *,
        connect_timeout_s: float = 2.0,
        timeout_s: float = 10.0,
    ) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.url = url
        self.ttl_s = _check_ttl(ttl_s)
        self.prefix = prefix
        self.name = f"redis at {redacted(url)}"
        self._error: type[Exception] = redis.exceptions.RedisError
        try:
            self._client: Any = redis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),
            )
        except ValueError as exc:
            raise ConfigError(f"store {redacted(url)!r} is not a usable Redis URL: {exc}") from exc

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (self._error, OSError) as exc:
            raise Unavailable(f"{self.name} could not {what} session state: {exc}") from exc

    def get(self, key: str) -> str | None:
        value = self._call("read", lambda: self._client.get(self.prefix + key))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def put(self, key: str, value: str) -> None:
        px = max(1, round(self.ttl_s * 1000))
        self._call("write", lambda: self._client.set(self.prefix + key, value, px=px))

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisSessionStore({redacted(self.url)!r}, ttl_s={self.ttl_s!r}, prefix={self.prefix!r})"


def open_session_store(url_or_path: str | Path, ttl_s: float) -> SessionStore:
    """The session store of a store setting: Redis for a ``redis://``/``rediss://`` URL, else the
    SQLite file at the path (``orchestrator.stores.target.store_kind`` decides, as for generations)."""
    if not isinstance(url_or_path, Path) and store_kind(url_or_path) == "redis":
        return RedisSessionStore(url_or_path, ttl_s)
    return SQLiteSessionStore(url_or_path, ttl_s)


class SessionSlot:
    """A session store opened at its first read or write (by ``open_store``) and kept until
    ``close``: a session's state store, nothing opened while no conversation is asked. Thread-safe."""

    name = "session store"

    def __init__(self, open_store: Callable[[], SessionStore], ttl_s: float) -> None:
        self._open = open_store
        self.ttl_s = ttl_s
        self._store: SessionStore | None = None
        self._lock = threading.Lock()

    def opened(self) -> SessionStore:
        with self._lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    def get(self, key: str) -> str | None:
        return self.opened().get(key)

    def put(self, key: str, value: str) -> None:
        self.opened().put(key, value)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
