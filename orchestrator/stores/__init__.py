"""The stores the orchestrator owns: the generation cache (SQLite by default, Redis to share it
between replicas), behind one protocol and one shared test suite.

    from orchestrator.stores import open_generation_store
    store = open_generation_store("redis://cache:6379/0", ttl_s=86_400)   # or a file path
    store.put_many({key: generation}); store.get_many([key])
"""

from orchestrator.stores.base import GenerationStore, StoreStats
from orchestrator.stores.open import open_generation_store
from orchestrator.stores.redis_store import RedisGenerationStore
from orchestrator.stores.sqlite_store import SQLiteGenerationStore
from orchestrator.stores.target import store_kind

__all__ = [
    "GenerationStore",
    "RedisGenerationStore",
    "SQLiteGenerationStore",
    "StoreStats",
    "open_generation_store",
    "store_kind",
]
