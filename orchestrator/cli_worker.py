"""``coe worker``: run batch jobs from the job store, beside or instead of ``coe serve``'s own
worker threads (several workers on one store never run a job twice)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli_options import DataOpt, NoSkipOpt, PoolOpt, StoreOpt, command_settings

if TYPE_CHECKING:
    from orchestrator.settings import JobSettings

ReclaimOpt = Annotated[
    float | None,
    typer.Option(help="Take over a running job whose worker is silent this long, s (default: settings)."),
]
HeartbeatOpt = Annotated[
    float | None, typer.Option(help="How often a worker reports on its job, s (default: settings).")
]
BenchmarkSpecOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--benchmark",
        metavar="SPEC",
        help="A benchmark spec file jobs may name (by its spec's name) beside the built-ins; repeat for more.",
    ),
]


def job_settings(**given: object) -> JobSettings:
    """``JobSettings`` with the options given (None: the settings' default); one line if wrong."""
    from pydantic import ValidationError

    from common.errors import config_error
    from orchestrator.settings import JobSettings

    try:
        return JobSettings.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, "job settings") from exc


def worker_command(
    store: StoreOpt = None,
    pool: PoolOpt = None,
    data_dir: DataOpt = None,
    chunk: Annotated[int | None, typer.Option(min=1, help="Questions per step (default: settings).")] = None,
    reclaim_s: ReclaimOpt = None,
    heartbeat_s: HeartbeatOpt = None,
    memory_budget_mb: Annotated[
        float | None,
        typer.Option("--memory-budget-mb", min=1, help="Memory models may hold at once (default: measured)."),
    ] = None,
    benchmark: BenchmarkSpecOpt = None,
    no_skip: NoSkipOpt = False,
) -> None:
    """Run batch jobs (POST /v1/batches) from the job store until SIGTERM or Ctrl-C: each job's
    questions through the batch planner, a step at a time, its generations checkpointed under
    the job's id. Stopped, it finishes its step and hands the job back; killed, its job is
    taken over by another worker (or by this one started again) without regenerating anything.
    Jobs name benchmarks: give the same --benchmark spec files as the service."""
    from eval import registered_benchmarks
    from orchestrator.jobs_worker import JobWorker
    from orchestrator.sdk import Orchestrator
    from orchestrator.stores.jobs_open import open_job_store
    from orchestrator.stores.target import store_location

    settings = command_settings(
        pool=pool,
        data_dir=data_dir,
        store=store,
        memory_budget_mb=memory_budget_mb,
        aggregator_skip=False if no_skip else None,
    )
    jobs = job_settings(chunk=chunk, reclaim_s=reclaim_s, heartbeat_s=heartbeat_s)
    benchmarks = registered_benchmarks(benchmark or ())
    where = store_location(settings.store, settings.runs_dir)
    job_store = open_job_store(where, reclaim_s=jobs.reclaim_s, max_attempts=jobs.max_attempts)
    try:
        with Orchestrator(settings) as coe:
            coe.router()  # the router's artefacts load now, not with the first job
            worker = JobWorker(coe, job_store, jobs, benchmarks=benchmarks)

            def stop(signum: int, frame: object) -> None:
                print(f"coe worker: stopping after the current step ({signal.Signals(signum).name})", file=sys.stderr)
                worker.stopping.set()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            print(f"coe worker {worker.me.name}: pool {coe.pool.name}, jobs from {job_store.location}", file=sys.stderr)
            worker.serve()  # in this thread, where the signal handlers run
    finally:
        job_store.close()
    print(f"coe worker: stopped after {len(worker.ran)} job(s)", file=sys.stderr)
