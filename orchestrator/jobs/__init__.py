"""Durable batch jobs: the queue protocol and its models (``queue``), its SQLite and Redis
queues, their opener, the worker that runs a job through the pipeline a step at a time, and the
one results writer (``results``: pipeline answers -> result rows, for jobs and ``coe eval``).

    from orchestrator.jobs import JobRequest, open_job_store
    jobs = open_job_store("redis://cache:6379/0")        # or an SQLite file (shared with the cache)
    job = jobs.create(JobRequest(questions=["Is a tomato a fruit?"]), total=1)
"""

from orchestrator.jobs.open import open_job_store
from orchestrator.jobs.queue import Job, JobRequest, JobResults, JobStore, WorkerId

__all__ = ["Job", "JobRequest", "JobResults", "JobStore", "WorkerId", "open_job_store"]
