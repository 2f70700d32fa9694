"""The stores the orchestrator owns, each SQLite by default (one file, nothing to start) and Redis
to share it between replicas: the generation cache and batch jobs.

    from orchestrator.stores import open_generation_store, open_job_store
    cache = open_generation_store("redis://cache:6379/0", ttl_s=86_400)   # or a file path
    cache.put_many({key: generation}); cache.get_many([key])
    jobs = open_job_store("redis://cache:6379/0")                        # the same location
"""

from orchestrator.stores.base import GenerationStore, StoreStats
from orchestrator.stores.jobs import Job, JobRequest, JobResults, JobStore, WorkerId
from orchestrator.stores.jobs_open import open_job_store
from orchestrator.stores.open import open_generation_store
from orchestrator.stores.redis_store import RedisGenerationStore
from orchestrator.stores.sqlite_store import SQLiteGenerationStore
from orchestrator.stores.target import store_kind

__all__ = [
    "GenerationStore",
    "Job",
    "JobRequest",
    "JobResults",
    "JobStore",
    "RedisGenerationStore",
    "SQLiteGenerationStore",
    "StoreStats",
    "WorkerId",
    "open_generation_store",
    "open_job_store",
    "store_kind",
]
