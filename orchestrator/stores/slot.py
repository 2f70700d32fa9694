"""``StoreSlot``: a generation store opened on first use and kept until closed (a session's
cache: input refused before any run opens nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from common.requests import Generation
from orchestrator.stores.base import GenerationStore

__all__ = ["StoreSlot"]


class StoreSlot:
    """Holds the store ``open_store`` makes, made at the first ``get`` (or the first read or write
    through ``on_use``) and closed by ``close``; safe to share between threads."""

    def __init__(self, open_store: Callable[[], GenerationStore]) -> None:
        self._open = open_store
        self._store: GenerationStore | None = None
        self._lock = threading.Lock()

    def get(self) -> GenerationStore:
        with self._lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    def on_use(self) -> _OpenedOnUse:
        """A cache for a run: the store is opened when the run first reads or writes it."""
        return _OpenedOnUse(self.get)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


class _OpenedOnUse:
    def __init__(self, store: Callable[[], GenerationStore]) -> None:
        self._store = store

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        return self._store().get_many(keys)

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        self._store().put_many(entries)
