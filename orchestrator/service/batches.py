"""Batch jobs over REST: ``POST /v1/batches``, ``GET /v1/batches`` and ``/v1/batches/{id}``,
``GET /v1/batches/{id}/results``, ``DELETE /v1/batches/{id}`` (cancel).

A job is checked when it is submitted (policy, k, its questions or its benchmark, split and
sample), queued in the job store and run by a worker (``orchestrator.jobs_worker``): a thread
of this service or a ``coe worker`` process on the same store. Statuses: 202 with the queued
job; 404 ``not_found`` for an unknown id; 409 ``conflict`` for the results of a job that is not
done, or cancelling one that is done or failed; 422 naming the field of a bad body; 503
``unavailable`` when the job store cannot be reached.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from common.errors import NotFound
from orchestrator.job_results import job_questions
from orchestrator.service.state import Service
from orchestrator.stores.jobs import Job, JobRequest, JobResults, is_job_id

router = APIRouter(prefix="/v1")


class JobList(BaseModel):
    data: list[Job]


@router.post("/batches", status_code=202)
async def create_batch(body: JobRequest, request: Request) -> Job:
    """Queue a job: its questions inline, or a benchmark (split, limit, seed); policy, k and aggregation."""
    service: Service = request.app.state.service
    await run_in_threadpool(service.asking, body.policy, body.k, body.aggregation, body.max_tokens)
    asked = await run_in_threadpool(job_questions, body, service.coe.settings)
    return await run_in_threadpool(service.jobs.create, body, len(asked.questions))


@router.get("/batches")
async def list_batches(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JobList:
    """The newest jobs first."""
    service: Service = request.app.state.service
    return JobList(data=await run_in_threadpool(service.jobs.list, limit))


@router.get("/batches/{job_id}")
async def get_batch(job_id: str, request: Request) -> Job:
    """A job's state and progress (``done`` of ``total`` questions)."""
    service: Service = request.app.state.service
    return await run_in_threadpool(service.jobs.get, _checked(job_id))


@router.get("/batches/{job_id}/results")
async def batch_results(job_id: str, request: Request) -> JobResults:
    """A done job's results in the ``coe eval`` format: ``run`` (run.json) and ``results``
    (the lines of results.jsonl). 409 while the job is not done."""
    service: Service = request.app.state.service
    return await run_in_threadpool(service.jobs.results, _checked(job_id))


@router.delete("/batches/{job_id}")
async def cancel_batch(job_id: str, request: Request) -> Job:
    """Cancel a queued or running job (a running one stops after its current step)."""
    service: Service = request.app.state.service
    return await run_in_threadpool(service.jobs.cancel, _checked(job_id))


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise NotFound(f"batch job {job_id!r} does not exist")
    return job_id


__all__ = ["router"]
