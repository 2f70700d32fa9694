"""Stores: batch jobs (``jobs``: SQLite for one machine, Redis for replicas sharing a queue).

``open_job_store(location)`` picks the implementation from the location: a ``redis://`` (or
``rediss://``, ``unix://``) URL, or an SQLite file path.
"""

from orchestrator.stores.jobs import Job, JobRequest, JobResults, JobStore, WorkerId, open_job_store

__all__ = ["Job", "JobRequest", "JobResults", "JobStore", "WorkerId", "open_job_store"]
