"""The generation store protocol, its counters, and the one stored form of an entry.

A stored value is a JSON envelope ``{"format", "key", "digest", "generation"}``: the request key
it answers, the generation as a JSON string, and the sha256 of that string. Reading checks all
three; an entry that does not parse, carries another key, or whose payload no longer matches
its digest is left out (logged and counted as a bad entry), never returned and never raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from batching.cache import GenerationCache
from common.errors import ConfigError
from common.requests import Generation

__all__ = [
    "ENTRY_FORMAT",
    "BadEntry",
    "GenerationStore",
    "StoreStats",
    "check_max_entries",
    "check_ttl",
    "decode_entry",
    "encode_entry",
    "read_entries",
]

log = logging.getLogger(__name__)

ENTRY_FORMAT = "coe-generation/1"


@dataclass
class StoreStats:
    """What one store object has seen since it was opened (thread-safe counters)."""

    hits: int = 0
    misses: int = 0
    bad_entries: int = 0
    written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, hits: int = 0, misses: int = 0, bad_entries: int = 0, written: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.bad_entries += bad_entries
            self.written += written

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "bad_entries": self.bad_entries, "written": self.written}


@runtime_checkable
class GenerationStore(GenerationCache, Protocol):
    """A generation cache the orchestrator owns: ``get_many``/``put_many`` (the executor's seam,
    ``batching.cache.GenerationCache``), plus ``ping`` (raises ``Unavailable`` naming the store
    when it cannot be reached), ``close``, its ``name`` for messages and its ``stats``. Expiry
    (``ttl_s``) is fixed when the store is made."""

    name: str
    ttl_s: float | None
    stats: StoreStats

    def ping(self) -> None:
        """Return when the store answers; raise ``Unavailable`` naming it otherwise."""

    def close(self) -> None:
        """Let go of connections and files."""


class BadEntry(Exception):
    """A stored value that is not a readable entry for its key (the message says why)."""


def check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is not None and (isinstance(ttl_s, bool) or not ttl_s > 0):
        raise ConfigError(f"cache_ttl_s must be a positive number of seconds or None, got {ttl_s!r}")
    return ttl_s


def check_max_entries(max_entries: int | None) -> int | None:
    if max_entries is not None and (
        isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
    ):
        raise ConfigError(f"cache_max_entries must be a whole number from 1 or None, got {max_entries!r}")
    return max_entries


def encode_entry(key: str, generation: Generation) -> str:
    payload = generation.model_dump_json()
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return json.dumps({"format": ENTRY_FORMAT, "key": key, "digest": digest, "generation": payload})


def decode_entry(key: str, raw: str | bytes) -> Generation:
    """The generation a stored value holds for ``key``; ``BadEntry`` saying why it cannot be used."""
    try:
        entry = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadEntry(f"not JSON ({exc})") from exc
    if not isinstance(entry, dict):
        raise BadEntry(f"not an entry (a JSON {type(entry).__name__})")
    if entry.get("format") != ENTRY_FORMAT:
        raise BadEntry(f"format {entry.get('format')!r}, not {ENTRY_FORMAT!r}")
    if entry.get("key") != key:
        raise BadEntry(f"it holds the entry of key {str(entry.get('key'))[:16]!r}")
    payload = entry.get("generation")
    if not isinstance(payload, str) or not isinstance(entry.get("digest"), str):
        raise BadEntry("generation or digest missing")
    if hashlib.sha256(payload.encode()).hexdigest() != entry["digest"]:
        raise BadEntry("its generation does not match its digest")
    try:
        generation = Generation.model_validate_json(payload)
    except ValidationError as exc:
        raise BadEntry(f"not a generation ({exc.error_count()} problem(s))") from exc
    if not generation.ok:
        raise BadEntry("a failed generation")
    return generation


def read_entries(
    name: str, stats: StoreStats, wanted: list[str], found: Mapping[str, str | bytes]
) -> dict[str, Generation]:
    """Decode the values ``found`` for ``wanted`` keys, counting hits, misses and bad entries;
    a bad entry is logged and left out."""
    out: dict[str, Generation] = {}
    bad = 0
    for key in wanted:
        raw = found.get(key)
        if raw is None:
            continue
        try:
            out[key] = decode_entry(key, raw)
        except BadEntry as exc:
            bad += 1
            log.warning("%s: entry %s... ignored: %s", name, key[:16], exc)
    stats.count(hits=len(out), misses=len(wanted) - len(out), bad_entries=bad)
    return out
