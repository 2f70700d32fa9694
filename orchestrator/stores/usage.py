"""What each API key spent, per window (a UTC day or month), kept where the service keeps its
store so that budgets hold across restarts and are shared by replicas.

A window is a name (``day:2025-03-01``, ``month:2025-03``; the service names them) and an
expiry: a row outlives its window by ``KEEP_S`` and is then dropped. ``add`` adds to every named
window at once (one transaction in SQLite, one MULTI in Redis), so replicas adding at the same
time lose nothing. Keys are the service's key ids (a prefix of the key's SHA-256), never keys.

SQLite: the table ``usage`` in the store's file (beside the generation cache and the jobs).
Redis: one hash per key and window, ``coe:usage:<key id>:<window>``, with ``HINCRBY`` and
``HINCRBYFLOAT``, expiring with its row.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from common.errors import ConfigError, Unavailable
from orchestrator.stores.target import redacted, store_kind

__all__ = ["KEEP_S", "RedisUsageStore", "SQLiteUsageStore", "Spent", "UsageStore", "open_usage_store"]

KEEP_S = 40 * 86_400.0
"""How long a window's row is kept after the window ends (a month's row lasts into the next)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Spent:
    """What a key spent in one window."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


class UsageStore(Protocol):
    """Per-key, per-window counters that several processes add to at once."""

    name: str

    def add(self, key: str, windows: Mapping[str, float], spent: Spent) -> None:
        """Add ``spent`` to ``key``'s count in each window (window name -> when it ends, epoch s)."""

    def read(self, key: str, windows: Sequence[str]) -> dict[str, Spent]:
        """``key``'s counts in each window (zero where it spent nothing)."""

    def ping(self) -> None:
        """Return when the store answers; ``Unavailable`` naming it otherwise."""

    def close(self) -> None: ...


def open_usage_store(location: str | Path) -> UsageStore:
    """Redis for a ``redis://``/``rediss://`` URL, else the SQLite file at ``location``."""
    if isinstance(location, str) and store_kind(location) == "redis":
        return RedisUsageStore(location)
    return SQLiteUsageStore(location)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL,
    window TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, window)
)
"""
_ADD = """
INSERT INTO usage (key, window, requests, tokens_in, tokens_out, cost, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key, window) DO UPDATE SET
    requests = requests + excluded.requests,
    tokens_in = tokens_in + excluded.tokens_in,
    tokens_out = tokens_out + excluded.tokens_out,
    cost = cost + excluded.cost,
    expires_at = max(expires_at, excluded.expires_at)
"""


class SQLiteUsageStore:
    """``UsageStore`` in the SQLite file ``path`` (WAL mode; made with its folder if missing)."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.name = f"usage store {self.path}"
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise ConfigError(f"{self.name} is a directory, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.name} cannot be opened: {exc}") from exc

    def add(self, key: str, windows: Mapping[str, float], spent: Spent) -> None:
        now = time.time()
        rows = [
            (key, w, spent.requests, spent.tokens_in, spent.tokens_out, spent.cost, end + KEEP_S)
            for w, end in windows.items()
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(_ADD, rows)
                self._db.execute("DELETE FROM usage WHERE expires_at <= ?", (now,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise Unavailable(f"{self.name} cannot be written: {exc}") from exc

    def read(self, key: str, windows: Sequence[str]) -> dict[str, Spent]:
        wanted = list(dict.fromkeys(windows))
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT window, requests, tokens_in, tokens_out, cost FROM usage WHERE key = ? AND window IN ({marks})"
        with self._lock:
            try:
                rows = self._db.execute(sql, (key, *wanted)).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc
        found = {w: Spent(int(r), int(i), int(o), float(c)) for w, r, i, o, c in rows}
        return {w: found.get(w, Spent()) for w in wanted}

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT 1 FROM usage LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisUsageStore:
    """``UsageStore`` in the Redis at ``url``: one hash per key and window (see the module)."""

    def __init__(self, url: str, prefix: str = "coe:usage:", *, timeout_s: float = 5.0) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.name = f"usage store at {redacted(url)}"
        self._error: type[Exception] = redis.exceptions.RedisError
        try:
            self._client: Any = redis.Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=timeout_s,
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),
            )
        except ValueError as exc:
            raise ConfigError(f"store {redacted(url)!r} is not a usable Redis URL: {exc}") from exc

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (self._error, OSError) as exc:
            raise Unavailable(f"{self.name} could not {what}: {' '.join(str(exc).split())}") from exc

    def _key(self, key: str, window: str) -> str:
        return f"{self.prefix}{key}:{window}"

    def add(self, key: str, windows: Mapping[str, float], spent: Spent) -> None:
        pipe = self._client.pipeline(transaction=True)
        for window, end in windows.items():
            name = self._key(key, window)
            pipe.hincrby(name, "requests", spent.requests)
            pipe.hincrby(name, "tokens_in", spent.tokens_in)
            pipe.hincrby(name, "tokens_out", spent.tokens_out)
            pipe.hincrbyfloat(name, "cost", spent.cost)
            pipe.expireat(name, int(end + KEEP_S))
        self._call("write", pipe.execute)

    def read(self, key: str, windows: Sequence[str]) -> dict[str, Spent]:
        wanted = list(dict.fromkeys(windows))
        pipe = self._client.pipeline(transaction=False)
        for window in wanted:
            pipe.hgetall(self._key(key, window))
        found: list[dict[bytes, bytes]] = self._call("read", pipe.execute)
        out = {}
        for window, raw in zip(wanted, found, strict=True):
            out[window] = Spent(
                int(raw.get(b"requests", 0)),
                int(raw.get(b"tokens_in", 0)),
                int(raw.get(b"tokens_out", 0)),
                float(raw.get(b"cost", 0.0)),
            )
        return out

    def ping(self) -> None:
        self._call("answer PING", self._client.ping)

    def close(self) -> None:
        self._client.close()
