"""The default generation store: one SQLite file under the runs folder; nothing to start.

WAL mode and a busy timeout make it safe for several processes on one machine (service
workers, a CLI run beside the service): readers never wait, writers queue. The file carries a
``meta`` table (format, version) like the run store's; a file that is not this store, or is
corrupt, is refused with one line and left untouched. Expired entries read as missing and are
deleted as new ones are written; with ``max_entries``, the oldest entries over it are deleted
then too, so the file stays bounded.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path

from common.errors import ConfigError, Unavailable
from common.requests import Generation
from orchestrator.stores.base import StoreStats, check_max_entries, check_ttl, encode_entry, read_entries
from orchestrator.stores.sessions import SESSION_TABLE

__all__ = ["SQLiteGenerationStore"]

SHARED_TABLES = frozenset({"jobs", "job_results", "sqlite_sequence", "usage", "semantic_answers", SESSION_TABLE})
"""Tables other stores keep in the same file (the job store, ``jobs_sqlite``, whose AUTOINCREMENT
makes SQLite add ``sqlite_sequence``; the keys' usage, ``stores.usage``; the semantic cache,
``stores.semantic``; conversations' session state, ``stores.sessions``): a file holding only those
is still ours to create the cache's tables in."""

log = logging.getLogger(__name__)

_FORMAT = "symbolic-coe-generations"
_VERSION = "1"
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE entries (key TEXT PRIMARY KEY, entry TEXT NOT NULL, stored_at REAL NOT NULL, expires_at REAL)",
    "CREATE INDEX entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL",
)
_AGE_INDEX = "CREATE INDEX IF NOT EXISTS entries_age ON entries (stored_at)"
"""Orders entries oldest first for ``max_entries`` (added to files made before it, when opened)."""
_CHUNK = 500  # keys per query (SQLite's limit on bound parameters is higher; this keeps queries small)


class SQLiteGenerationStore:
    """Generations by request key in the SQLite file ``path`` (made if missing)."""

    def __init__(
        self,
        path: Path | str,
        ttl_s: float | None = None,
        *,
        max_entries: int | None = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.ttl_s = check_ttl(ttl_s)
        self.max_entries = check_max_entries(max_entries)
        self.name = f"generation store {self.path}"
        self.stats = StoreStats()
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise ConfigError(f"{self.name} is a directory, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.name} cannot be opened: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._check_or_create()
        except ConfigError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"{self.name} is unreadable or corrupt ({exc}); leaving it untouched") from exc

    def _tables(self) -> set[str]:
        """The file's tables."""
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check_or_create(self) -> None:
        db = self._db
        if not self._tables() - SHARED_TABLES:  # empty, or only other stores' tables (they share the file)
            db.execute("BEGIN IMMEDIATE")  # another process may be creating it too: one does
            try:
                if not self._tables() - SHARED_TABLES:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute("INSERT INTO meta VALUES ('format', ?), ('version', ?)", (_FORMAT, _VERSION))
                    log.info("%s: created", self.name)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        tables = self._tables()
        if "meta" not in tables:
            raise ConfigError(
                f"{self.path} is an SQLite file but not a generation store (tables: {', '.join(sorted(tables))}); "
                "leaving it untouched"
            )
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != _FORMAT:
            raise ConfigError(
                f"{self.path} is not a generation store (format {meta.get('format')!r}); leaving it untouched"
            )
        if meta.get("version") != _VERSION:
            raise ConfigError(f"{self.name} has version {meta.get('version')!r}; this code reads {_VERSION}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ConfigError(f"{self.name} is corrupt ({check}); leaving it untouched")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_AGE_INDEX)

    # -- the protocol ---------------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str | bytes] = {}
        now = time.time()
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = (
                    f"SELECT key, entry FROM entries WHERE key IN ({marks}) AND (expires_at IS NULL OR expires_at > ?)"
                )
                try:
                    found.update(self._db.execute(sql, (*chunk, now)).fetchall())
                except sqlite3.Error as exc:
                    raise Unavailable(f"{self.name} cannot be read: {exc}") from exc
        return read_entries(self.name, self.stats, wanted, found)

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        now = time.time()
        expires = now + self.ttl_s if self.ttl_s is not None else None
        rows = [(key, encode_entry(key, g), now, expires) for key, g in entries.items() if g.ok]
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
                self._db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
                if self.max_entries is not None:
                    self._trim(self.max_entries)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):  # a closed or broken connection has nothing to roll back
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise Unavailable(f"{self.name} cannot be written: {exc}") from exc
        self.stats.count(written=len(rows))

    def _trim(self, limit: int) -> None:
        """Delete the oldest entries over ``limit`` (inside the writing transaction)."""
        (count,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        if count > limit:
            self._db.execute(
                "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries ORDER BY stored_at LIMIT ?)",
                (count - limit,),
            )

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
            except sqlite3.Error as exc:
                raise Unavailable(f"{self.name} cannot be read: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteGenerationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteGenerationStore({str(self.path)!r}, ttl_s={self.ttl_s!r}, max_entries={self.max_entries!r})"
