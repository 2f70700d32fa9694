"""``coe worker``: run batch jobs from the job store, beside or instead of ``coe serve``'s own
worker threads (several workers on one store never run a job twice)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from orchestrator.cli.options import (
    BenchmarkSpecOpt,
    DataOpt,
    DevicesOpt,
    ExecutorOpt,
    HeartbeatOpt,
    NoSkipOpt,
    PoolOpt,
    RayAddressOpt,
    ReclaimOpt,
    StoreOpt,
    command_settings,
    job_settings,
)


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
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    devices: DevicesOpt = None,
) -> None:
    """Run batch jobs (POST /v1/batches) from the job store until SIGTERM or Ctrl-C: each job's
    questions through the batch planner, a step at a time, its generations checkpointed under
    the job's id. Stopped, it finishes its step and hands the job back; killed, its job is
    taken over by another worker (or by this one started again) without regenerating anything.
    Jobs name benchmarks: give the same --benchmark spec files as the service."""
    from eval import registered_benchmarks
    from orchestrator.jobs.open import open_job_store
    from orchestrator.jobs.worker import JobWorker
    from orchestrator.sdk import Orchestrator
    from orchestrator.stores.target import store_location

    settings = command_settings(
        pool=pool,
        data_dir=data_dir,
        store=store,
        memory_budget_mb=memory_budget_mb,
        aggregator_skip=False if no_skip else None,
        executor=executor,
        ray_address=ray_address,
        devices=devices,
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


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
