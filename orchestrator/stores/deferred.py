"""Stores opened when first read or written: a run whose input is refused before it reaches its
cache or its session state opens neither (no file made, no connection). ``HeldStores`` holds the
stores one setting names (the generation cache and the session state, in one place) for an owner
that closes them together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from common.requests import Generation
from orchestrator.stores.base import GenerationStore
from orchestrator.stores.open import open_generation_store
from orchestrator.stores.sessions import SessionStore, open_session_store

__all__ = ["CacheOnFirstUse", "HeldStores", "SessionsOnFirstUse"]

log = logging.getLogger(__name__)


class CacheOnFirstUse:
    """A generation cache (``batching.cache.GenerationCache``) whose store ``open`` gives on first use."""

    def __init__(self, open_store: Callable[[], GenerationStore]) -> None:
        self._open = open_store

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        return self._open().get_many(keys)

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        self._open().put_many(entries)


class SessionsOnFirstUse:
    """A session store (``orchestrator.stores.sessions.SessionStore``) that ``open`` gives on first use."""

    def __init__(self, open_store: Callable[[], SessionStore], ttl_s: float) -> None:
        self._open = open_store
        self.name = "session store"
        self.ttl_s = ttl_s

    def get(self, key: str) -> str | None:
        return self._open().get(key)

    def put(self, key: str, value: str) -> None:
        self._open().put(key, value)

    def close(self) -> None:
        """Nothing: the store belongs to whoever opened it."""


class HeldStores:
    """The generation store and the session store at ``target`` (a ``redis://`` URL or an SQLite
    file), each opened on first use, kept until ``close``."""

    def __init__(self, target: str | Path, cache_ttl_s: float | None, session_ttl_s: float) -> None:
        self.target = target
        self.cache_ttl_s = cache_ttl_s
        self.session_ttl_s = session_ttl_s
        self._generations: GenerationStore | None = None
        self._sessions: SessionStore | None = None
        self._lock = threading.Lock()

    @property
    def generations(self) -> GenerationStore:
        with self._lock:
            if self._generations is None:
                self._generations = open_generation_store(self.target, self.cache_ttl_s)
                log.info("generation cache: %s", self._generations.name)
            return self._generations

    @property
    def sessions(self) -> SessionStore:
        with self._lock:
            if self._sessions is None:
                self._sessions = open_session_store(self.target, self.session_ttl_s)
            return self._sessions

    def cache_on_use(self) -> CacheOnFirstUse:
        """The generation cache a run is given: opened when the run first reads or writes it."""
        return CacheOnFirstUse(lambda: self.generations)

    def sessions_on_use(self) -> SessionsOnFirstUse:
        """The session store a run is given: opened when the run first reads or writes it."""
        return SessionsOnFirstUse(lambda: self.sessions, self.session_ttl_s)

    def close(self) -> None:
        """Close the stores that were opened; opened again if asked for afterwards."""
        with self._lock:
            held, self._generations, self._sessions = (self._generations, self._sessions), None, None
        for store in held:
            if store is not None:
                store.close()
