"""Batch jobs over REST: ``POST /v1/batches``, ``GET /v1/batches`` (pages of summaries) and
``/v1/batches/{id}``, ``GET /v1/batches/{id}/results``, ``DELETE /v1/batches/{id}`` (cancel).

A job is checked when it is submitted (policy, k, its questions or its benchmark, split and
sample; at most ``MAX_JOB_QUESTIONS`` questions), queued in the job store and run by a worker
(``orchestrator.jobs.worker``): a thread of this service or a ``coe worker`` process on the same
store. A benchmark is named, never given as a path: the built-ins and the spec files registered
at start (``ServiceSettings.benchmarks``).

With API keys a job is its key's: every route answers another key's job as it answers a job
that does not exist (404 ``not_found``), and the listing holds only the caller's jobs. Without
keys every job is everyone's. A job is shown as a ``JobSummary``: its state and how it asks,
never its question texts (they may be thousands; the client sent them).

Statuses: 202 with the queued job; 404 ``not_found`` for an unknown (or another key's) id; 409
``conflict`` for the results of a job that is not done, or cancelling one that is done or failed;
422 naming the field (and the limit) of a bad body; 503 ``unavailable`` when the job store
cannot be reached.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from orchestrator.jobs.questions import job_questions
from orchestrator.jobs.queue import Job, JobRequest, JobResults, JobSummary, is_job_id, no_such_job, visible
from orchestrator.service.guard import caller_of
from orchestrator.service.state import Service

router = APIRouter(prefix="/v1")

MAX_PAGE = 100
"""Most jobs in one page of ``GET /v1/batches``."""


class JobPage(BaseModel):
    """One page of the caller's jobs, newest first; ``after=last_id`` asks for the next one."""

    object: Literal["list"] = "list"
    data: list[JobSummary]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = Field(False, description="More jobs follow: ask again with after=last_id.")


@router.post("/batches", status_code=202)
async def create_batch(body: JobRequest, request: Request) -> JobSummary:
    """Queue a job: its questions inline, or a benchmark (split, limit, seed); policy, k and aggregation."""
    service: Service = request.app.state.service
    await run_in_threadpool(service.asking, body.policy, body.k, body.aggregation, body.max_tokens)
    if service.tenants is not None:  # a key that has spent a budget queues nothing
        await run_in_threadpool(service.tenants.check, caller_of(request))
    asked = await run_in_threadpool(job_questions, body, service.coe.settings, service.benchmarks)
    job = await run_in_threadpool(service.jobs.create, body, len(asked.questions), caller_of(request))
    return job.summary()


@router.get("/batches")
async def list_batches(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> JobPage:
    """The caller's jobs, newest first, ``limit`` at a time; ``after`` a job id: the jobs older than it."""
    service: Service = request.app.state.service
    if after is not None:
        _checked(after)
    found = await run_in_threadpool(lambda: service.jobs.list(limit + 1, caller=caller_of(request), after=after))
    page = [_shown(service, job) for job in found[:limit]]
    first, last = (page[0].id, page[-1].id) if page else (None, None)
    return JobPage(data=page, first_id=first, last_id=last, has_more=len(found) > limit)


@router.get("/batches/{job_id}")
async def get_batch(job_id: str, request: Request) -> JobSummary:
    """A job's state and progress (``done`` of ``total`` questions)."""
    service: Service = request.app.state.service
    return _shown(service, (await _own(request, job_id)).summary())


@router.get("/batches/{job_id}/results")
async def batch_results(job_id: str, request: Request) -> JobResults:
    """A done job's results in the ``coe eval`` format: ``run`` (run.json) and ``results``
    (the lines of results.jsonl). 409 while the job is not done."""
    service: Service = request.app.state.service
    job = await _own(request, job_id)
    return service.redact.results(await run_in_threadpool(service.jobs.results, job.id))


@router.delete("/batches/{job_id}")
async def cancel_batch(job_id: str, request: Request) -> JobSummary:
    """Cancel a queued or running job (a running one stops after its current step)."""
    service: Service = request.app.state.service
    job = await _own(request, job_id)
    return _shown(service, (await run_in_threadpool(service.jobs.cancel, job.id)).summary())


async def _own(request: Request, job_id: str) -> Job:
    """The job, if the caller may see it; else the very answer an unknown id gets."""
    service: Service = request.app.state.service
    job = await run_in_threadpool(service.jobs.get, _checked(job_id))
    if not visible(job.owner, caller_of(request)):
        raise no_such_job(job_id)
    return job


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise no_such_job(job_id)
    return job_id


def _shown(service: Service, job: JobSummary) -> JobSummary:
    """The job with its error redacted (a worker elsewhere may have written its own paths)."""
    if job.error is None:
        return job
    return job.model_copy(update={"error": service.redact.shown(job.error, f"job {job.id}")})


__all__ = ["MAX_PAGE", "JobPage", "router"]
