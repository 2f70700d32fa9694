"""The generation cache's stores: SQLite by default (one file, nothing to start) and Redis to
share it between replicas; one opener (``open_generation_store``) and one reader of store URLs
(``target.store_kind``), which the job queues (``orchestrator.jobs``) read their location by too.

    from orchestrator.stores import open_generation_store
    cache = open_generation_store("redis://cache:6379/0", ttl_s=86_400)   # or a file path
    cache.put_many({key: generation}); cache.get_many([key])
"""

from orchestrator.stores.base import GenerationStore, StoreStats
from orchestrator.stores.open import open_generation_store
from orchestrator.stores.redis_store import RedisGenerationStore
from orchestrator.stores.slot import StoreSlot
from orchestrator.stores.sqlite_store import SQLiteGenerationStore
from orchestrator.stores.target import store_kind, store_location

__all__ = [
    "GenerationStore",
    "RedisGenerationStore",
    "SQLiteGenerationStore",
    "StoreSlot",
    "StoreStats",
    "open_generation_store",
    "store_kind",
    "store_location",
]
