"""The generation cache and the job store share the default SQLite file (``runs_dir/store.sqlite``),
whichever of the two opens it first."""

from __future__ import annotations

import pytest

from common.requests import Generation
from orchestrator.jobs import JobRequest
from orchestrator.jobs.sqlite_queue import SQLiteJobStore
from orchestrator.stores import SQLiteGenerationStore


@pytest.mark.parametrize("first", ["cache", "jobs"])
def test_the_cache_and_the_jobs_share_one_file(tmp_path, first):
    path = tmp_path / "store.sqlite"
    opened = {}
    for kind in (first, "jobs" if first == "cache" else "cache"):
        opened[kind] = SQLiteGenerationStore(path) if kind == "cache" else SQLiteJobStore(path)
    cache, jobs = opened["cache"], opened["jobs"]
    cache.put_many({"k1": Generation(request_id="r", model="m", text="stored")})
    job = jobs.create(JobRequest(questions=["Is water wet?"]), total=1)
    assert cache.get_many(["k1"])["k1"].text == "stored"
    assert jobs.get(job.id).state == "queued"
    cache.close()
    jobs.close()
    again = SQLiteGenerationStore(path)  # reopened: both kinds of table, and its own meta
    assert again.get_many(["k1"])["k1"].text == "stored"
    again.close()
