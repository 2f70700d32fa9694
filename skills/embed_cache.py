"""Embeddings kept on disk, text by text: ``CachedEmbedder(embedder, folder)`` is an ``Embedder``.

One SQLite file per encoder in ``folder`` (``<encoder>.sqlite3``, write-ahead log, so several
processes may read and write it at once) holds one row per text: the SHA-256 of the text and its
vector as float32 bytes. ``embed(texts)`` returns the stored rows and embeds only the texts it
lacks, in one batch, then stores them. A stored row of the wrong size or with non-finite numbers
is never returned: it is logged and embedded again. A cache that cannot be opened, read or
written is one warning, and embedding goes on without it.

Rows are keyed by the encoder's ``name`` and the text alone: a different model given the same
name must be given another folder.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from skills.embed import Embedder
from skills.texts import check_texts

log = logging.getLogger(__name__)

_CHUNK = 900  # keys per SELECT (SQLite limits the number of bound parameters)
_TIMEOUT_S = 30.0  # how long one process waits for another's write to finish


def cache_file(folder: Path, encoder: str) -> Path:
    """The SQLite file of ``encoder``'s vectors in ``folder``; a name that had to be changed into
    a file name gets a hash of the real one, so two encoders never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", encoder).lstrip(".")
    if safe != encoder:
        safe = f"{safe}-{hashlib.sha256(encoder.encode('utf-8')).hexdigest()[:12]}"
    return Path(folder) / f"{safe}.sqlite3"


def text_key(text: str) -> bytes:
    """The key of a text's row: the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class CachedEmbedder:
    """``embedder`` with its vectors kept in ``folder``: the same ``name`` and ``embed`` contract."""

    def __init__(self, embedder: Embedder, folder: Path) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self.file = cache_file(Path(folder), embedder.name)
        self.embedded = 0
        """How many texts this cache has had to embed (the rest came from disk)."""
        self._broken = False

    def load(self) -> None:
        """Load the wrapped embedder's model now, when it has one to load (texts found in the cache
        never load it)."""
        load = getattr(self.embedder, "load", None)
        if callable(load):
            load()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        if self._broken:
            return self.embedder.embed(texts)
        keys = [text_key(t) for t in texts]
        text_of = dict(zip(keys, texts))
        found, dim = self._read(list(text_of))
        if self._broken:
            return self.embedder.embed(texts)
        missing = [k for k in text_of if k not in found]
        if missing:
            fresh = np.asarray(self.embedder.embed([text_of[k] for k in missing]), dtype=np.float32)
            self.embedded += len(missing)
            if fresh.ndim != 2 or len(fresh) != len(missing):
                raise ConfigError(f"embedder {self.name!r} gave shape {fresh.shape} for {len(missing)} texts")
            if found and fresh.shape[1] != dim:  # the encoder's width changed: nothing stored is of use
                log.warning(
                    "embedding cache %s: %s now gives %d numbers, not %s", self.file, self.name, fresh.shape[1], dim
                )
                found, missing = {}, list(text_of)
                fresh = np.asarray(self.embedder.embed(list(text_of.values())), dtype=np.float32)
                self.embedded += len(missing)
            self._write(missing, fresh)
            found.update(zip(missing, fresh))
        if not texts:
            return np.zeros((0, dim), dtype=np.float32) if dim is not None else self.embedder.embed(texts)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    # -- the store ---------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.file, timeout=_TIMEOUT_S, isolation_level=None)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
            yield db

    def _give_up(self, doing: str, exc: Exception) -> None:
        log.warning("embedding cache %s could not be %s (%s); embedding without it", self.file, doing, exc)
        self._broken = True

    def _read(self, keys: list[bytes]) -> tuple[dict[bytes, np.ndarray], int | None]:
        """The whole stored vectors of ``keys``, and the stored width (None: nothing stored yet)."""
        try:
            with self._connect() as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("encoder", self.name) != self.name:
                    raise sqlite3.DatabaseError(f"it holds vectors of {meta['encoder']!r}")
                rows: list[tuple[bytes, bytes]] = []
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows += db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk).fetchall()
        except (sqlite3.Error, OSError) as exc:
            self._give_up("read", exc)
            return {}, None
        dim = int(meta["dim"]) if str(meta.get("dim", "")).isdigit() else None
        return self._whole(rows, dim), dim

    def _whole(self, rows: list[tuple[bytes, bytes]], dim: int | None) -> dict[bytes, np.ndarray]:
        """The rows that are ``dim`` finite float32 numbers; the others are logged and left out."""
        size = 4 * dim if dim else -1
        good = {key: blob for key, blob in rows if isinstance(blob, bytes) and len(blob) == size}
        vectors = np.frombuffer(b"".join(good.values()), dtype="<f4").reshape(len(good), dim or 0)
        finite = np.isfinite(vectors).all(axis=1)
        damaged = len(rows) - int(finite.sum())
        if damaged:
            log.warning(
                "embedding cache %s: %d stored vector(s) damaged (wrong size or not numbers); embedding them again",
                self.file,
                damaged,
            )
        return {key: vector for key, vector, ok in zip(good, vectors, finite) if ok}

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        rows = [(key, vector.astype("<f4").tobytes()) for key, vector in zip(keys, vectors)]
        width = str(vectors.shape[1])
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("dim") != width:  # a first, new or damaged width: no stored row is whole
                    db.execute("DELETE FROM vectors")
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("encoder", self.name), ("dim", width)])
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
                db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._give_up("written", exc)


def cached_embed(embedder: Embedder, texts: Sequence[str], folder: Path) -> np.ndarray:
    """``embedder.embed(texts)`` through the cache in ``folder`` (callers pass ``Settings.embeddings_dir``)."""
    return CachedEmbedder(embedder, folder).embed(texts)
