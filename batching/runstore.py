"""Run stores: every finished generation of a batch run, so a killed run resumes where it was.

Generations are keyed by what was asked: ``request_key`` digests the model's source and
prompting, the request's messages and question id (and benchmark, for a replay expert), its
effective sampling, and whether it asked for log-probabilities (a generation made without them
cannot answer one that asks). A reused run id with a changed pool, policy or prompt therefore
regenerates exactly what changed, and never returns an answer to a different request.

``RunStore`` is the protocol the executor uses (``get_many``, ``put``); ``SQLiteRunStore``
keeps one table keyed by (run id, request key) in a WAL-mode SQLite file and commits once per
``put``. Only successful generations are kept: a failed task is tried again on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from batching.engines.kinds import engine_kind
from batching.spec import ExpertSpec
from common.errors import BadInput, CoeError
from common.requests import Generation, Message, Request

__all__ = ["RunStore", "SQLiteRunStore", "request_key", "request_keys"]

log = logging.getLogger(__name__)

_FORMAT = "symbolic-coe-runstore"
_VERSION = "3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    run_id TEXT NOT NULL,
    request_key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    model TEXT NOT NULL,
    generation TEXT NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (run_id, request_key)
);
"""


def request_key(spec: ExpertSpec, request: Request) -> str:
    """A digest of everything that decides a generation: the expert (its name, model source and
    prompting), the request's messages and question id (replay answers by it), and the sampling
    in effect, and ``logprobs`` when the request asks for them (a generation made without them
    lacks ``Generation.logprob``). The request's own id is not part of it.

    It is the SHA-256 of the JSON object of those fields (keys sorted, ``json.dumps``' default
    separators); ``request_keys`` writes that text field by field, the expert's fields and each
    sampling once per batch."""
    return request_keys([(spec, request)])[0]


def request_keys(asked: Iterable[tuple[ExpertSpec, Request]]) -> list[str]:
    """``request_key`` of each (expert, request), in order."""
    experts: dict[int, tuple[ExpertSpec, dict[str, str], bool]] = {}  # id(spec) -> (spec, its fields, recorded)
    samplings: dict[tuple[int, int | None, float | None, int | None], str] = {}
    # the messages' JSON by the ids of their objects (a batch's experts share them), each kept
    # beside its messages so that no id is reused while the batch is encoded
    written: dict[tuple[int, ...], tuple[tuple[Message, ...], str]] = {}
    out = []
    for spec, request in asked:
        known = experts.get(id(spec))
        if known is None or known[0] is not spec:
            kind = engine_kind(spec)
            described: dict[str, object] = {
                "expert": spec.name,
                "source": spec.source.model_dump(mode="json", include=set(kind.deciding)),
                "prompt_mode": spec.prompt_mode,
                "chat_template": spec.chat_template,
                "system_prompt": spec.system_prompt,
            }
            known = experts[id(spec)] = (spec, {k: _json(v) for k, v in described.items()}, kind.recorded)
        _, fields, recorded = known
        overrides = (id(spec), request.max_tokens, request.temperature, request.seed)
        sampling = samplings.get(overrides)
        if sampling is None:
            sampling = samplings[overrides] = _json(request.sampling(spec.sampling).model_dump(mode="json"))
        said = tuple(map(id, request.messages))
        known_messages = written.get(said)
        if known_messages is None:
            text = _json([m.model_dump(mode="json") for m in request.messages])
            known_messages = written[said] = (request.messages, text)
        encoded = {
            **fields,
            "messages": known_messages[1],
            "question_id": _json(request.question_id),
            "sampling": sampling,
        }
        if request.logprobs:  # only when asked, so the keys of every other request stay as they were
            encoded["logprobs"] = "true"
        if request.benchmark is not None and recorded:  # only where it decides: the recording
            encoded["benchmark"] = _json(request.benchmark)
        text = "{" + ", ".join(f'"{k}": {encoded[k]}' for k in sorted(encoded)) + "}"  # names need no escaping
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return out


_SORTED = json.JSONEncoder(sort_keys=True)
"""What ``json.dumps(value, sort_keys=True)`` makes for each call, made once."""


def _json(value: object) -> str:
    """``value`` as ``json.dumps(..., sort_keys=True)`` writes it inside a larger object."""
    return _SORTED.encode(value)


@runtime_checkable
class RunStore(Protocol):
    """Finished generations of batch runs, keyed by (run id, request key)."""

    def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing ones are left out)."""

    def put(self, run_id: str, generations: Mapping[str, Generation]) -> None:
        """Store finished generations by request key, all in one commit."""


class SQLiteRunStore:
    """A run store in one SQLite file (created if missing; never overwritten if foreign or corrupt)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise BadInput(f"run store {self.path} is a directory, not a file")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise BadInput(f"run store {self.path} cannot be opened: {exc}") from exc
        try:
            self._check_or_create(fresh)
        except CoeError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise BadInput(f"run store {self.path} is unreadable or corrupt ({exc}); leaving it untouched") from exc

    def _check_or_create(self, fresh: bool) -> None:
        db = self._db
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not fresh and tables and "meta" not in tables:
            raise BadInput(f"{self.path} is an SQLite file but not a run store (tables: {', '.join(sorted(tables))})")
        if tables:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BadInput(f"run store {self.path} is corrupt ({check}); leaving it untouched")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != _FORMAT:
                raise BadInput(f"{self.path} is not a run store (format {meta.get('format')!r})")
            if meta.get("version") != _VERSION:
                raise BadInput(f"run store {self.path} has version {meta.get('version')!r}; this code reads {_VERSION}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO meta VALUES ('format', ?), ('version', ?)", (_FORMAT, _VERSION))
            db.execute("COMMIT")
            log.info("run store: created %s", self.path)

    def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Generation]:
        wanted = list(dict.fromkeys(keys))
        out: dict[str, Generation] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._read(
                    f"SELECT request_key, task_id, generation FROM generations "
                    f"WHERE run_id = ? AND request_key IN ({marks})",
                    (run_id, *chunk),
                )
                for key, task_id, text in rows:
                    try:
                        out[key] = Generation.model_validate_json(text)
                    except ValidationError as exc:
                        raise BadInput(
                            f"run store {self.path}: stored generation of task {task_id!r} is unreadable"
                        ) from exc
        return out

    def put(self, run_id: str, generations: Mapping[str, Generation]) -> None:
        rows = [
            (run_id, key, g.request_id, g.model, g.model_dump_json(), time.time())
            for key, g in generations.items()
            if g.ok
        ]
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise BadInput(f"run store {self.path} cannot be written: {exc}") from exc

    def count(self, run_id: str) -> int:
        """How many generations are stored under ``run_id``."""
        with self._lock:
            return int(self._read("SELECT COUNT(*) FROM generations WHERE run_id = ?", (run_id,))[0][0])

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise BadInput(f"run store {self.path} cannot be read: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteRunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
