"""The generation cache's stores: SQLite by default (one file, nothing to start) and Redis to
share it between replicas; one opener (``open_generation_store``) and one reader of store URLs
(``target.store_kind``), which the job queues (``orchestrator.jobs``) read their location by too.

    from orchestrator.stores import open_generation_store
    cache = open_generation_store("redis://cache:6379/0", ttl_s=86_400)   # or a file path
    cache.put_many({key: generation}); cache.get_many([key])

Session state (``sessions``: what session affinity remembers of a conversation) is kept in the
same place, with an expiry: ``open_session_store(target, ttl_s)``; ``SessionSlot`` opens it on
first use.
"""

from orchestrator.stores.base import GenerationStore, StoreStats
from orchestrator.stores.open import open_generation_store
from orchestrator.stores.redis_store import RedisGenerationStore
from orchestrator.stores.sessions import (
    RedisSessionStore,
    SessionSlot,
    SessionStore,
    SQLiteSessionStore,
    open_session_store,
)
from orchestrator.stores.slot import StoreSlot
from orchestrator.stores.sqlite_store import SQLiteGenerationStore
from orchestrator.stores.target import store_kind, store_location

__all__ = [
    "GenerationStore",
    "RedisGenerationStore",
    "RedisSessionStore",
    "SQLiteGenerationStore",
    "SQLiteSessionStore",
    "SessionSlot",
    "SessionStore",
    "StoreSlot",
    "StoreStats",
    "open_generation_store",
    "open_session_store",
    "store_kind",
    "store_location",
]
