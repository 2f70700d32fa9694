"""``coe serve``: the REST service (FastAPI under uvicorn) on a pool."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import (
    BenchmarkSpecOpt,
    CacheModeOpt,
    DataOpt,
    HeartbeatOpt,
    NoSkipOpt,
    PolicyOpt,
    PoolOpt,
    ReclaimOpt,
    StoreOpt,
    command_settings,
    free_to_listen,
    job_settings,
)


def serve_command(
    pool: PoolOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes (each loads its own engines).")] = 1,
    policy: PolicyOpt = None,
    api_keys: Annotated[
        Path | None,
        typer.Option("--api-keys", help="File of API keys clients must send (one per line: a key or sha256:HEX)."),
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option("--rate-limit", min=1, help="Requests per key (or address) per minute.")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body accepted.")] = 2_000_000,
    memory_budget_mb: Annotated[
        float | None,
        typer.Option("--memory-budget-mb", min=1, help="Memory models may hold at once (default: measured)."),
    ] = None,
    grouping: Annotated[
        bool, typer.Option("--grouping/--fifo", help="Run waiting requests in groups per model, or one at a time.")
    ] = True,
    gather_ms: Annotated[float, typer.Option(min=0, help="How long a batch waits for requests to join it.")] = 20.0,
    max_queue: Annotated[
        int | None,
        typer.Option(min=1, help="Most questions waiting; over it a request is refused (503). Default: settings."),
    ] = None,
    queue_timeout_s: Annotated[
        float | None,
        typer.Option(help="Longest a question waits for its batch; then 503, never run. Default: settings."),
    ] = None,
    lazy: Annotated[
        bool,
        typer.Option(
            "--lazy",
            help="Ready once the router is loaded; engines, encoder and recordings load on first use "
            "(default: loaded at start, /readyz 503 until then).",
        ),
    ] = False,
    data_dir: DataOpt = None,
    store: StoreOpt = None,
    cache: CacheModeOpt = None,
    log_level: Annotated[
        str, typer.Option(help="Server log level: critical, error, warning, info, debug or trace.")
    ] = "info",
    job_workers: Annotated[
        int | None, typer.Option(min=0, max=64, help="Batch job worker threads per process (default: settings).")
    ] = None,
    job_reclaim_s: ReclaimOpt = None,
    job_heartbeat_s: HeartbeatOpt = None,
    benchmark: BenchmarkSpecOpt = None,
    no_skip: NoSkipOpt = False,
    semantic_cache: Annotated[
        bool,
        typer.Option(
            "--semantic-cache/--no-semantic-cache",
            help="Reuse an earlier answer for a question that means the same (same facts, close embeddings).",
        ),
    ] = False,
    semantic_threshold: Annotated[
        float | None,
        typer.Option(max=1.0, help="The least cosine similarity of two questions for a reuse, over 0 (default 0.9)."),
    ] = None,
) -> None:
    """Serve a pool over HTTP: POST /v1/answer, OpenAI-compatible POST /v1/chat/completions and
    GET /v1/models, batch jobs under /v1/batches, GET /healthz, /readyz and /metrics. Jobs name
    benchmarks: the built-ins and each spec file given with --benchmark (by its spec's name).
    Everything is checked before the port is bound: each problem is one line, exit status 2."""
    import uvicorn
    from pydantic import ValidationError

    from common.errors import BadInput, config_error
    from orchestrator.pools.settings import SERVICE_ENV, SemanticCacheSettings, ServiceSettings
    from orchestrator.sdk import Orchestrator
    from orchestrator.service.app import create_app
    from orchestrator.service.state import Service

    if log_level.lower() not in LOG_LEVELS:
        raise BadInput(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    core = command_settings(
        pool=pool,
        data_dir=data_dir,
        policy=policy,
        memory_budget_mb=memory_budget_mb,
        store=store,
        cache=cache,
        aggregator_skip=False if no_skip else None,
    )
    jobs = job_settings(workers=job_workers, reclaim_s=job_reclaim_s, heartbeat_s=job_heartbeat_s)
    given = {"max_queue": max_queue, "queue_timeout_s": queue_timeout_s}
    semantic = {"enabled": semantic_cache, "threshold": semantic_threshold}
    try:
        settings = ServiceSettings(
            core=core,
            host=host,
            port=port,
            workers=workers,
            api_keys_file=api_keys,
            rate_limit_per_minute=rate_limit,
            max_body_bytes=max_body_bytes,
            grouping=grouping,
            gather_ms=gather_ms,
            lazy=lazy,
            jobs=jobs,
            benchmarks=tuple(benchmark or ()),
            semantic_cache=SemanticCacheSettings.model_validate({k: v for k, v in semantic.items() if v is not None}),
            **{k: v for k, v in given.items() if v is not None},
        )
    except ValidationError as exc:
        raise config_error(exc, "service settings") from exc
    if api_keys is not None:
        from orchestrator.service.security import ApiKeys

        ApiKeys.from_file(api_keys)  # a bad key file is one line now, not a crash in each worker
    from eval import registered_benchmarks

    registered_benchmarks(settings.benchmarks)  # so is a bad spec file, or a name given twice
    coe = Orchestrator(core)  # the pool file, then the default policy's router (profile, classifier)
    coe.router()
    free_to_listen(host, port)
    print(f"serving pool {core.pool} on http://{host}:{port} ({workers} worker(s))", file=sys.stderr)
    if workers == 1:
        app = create_app(settings, service=Service(settings, coe))
        uvicorn.run(app, host=host, port=port, log_level=log_level.lower())
        return
    os.environ[SERVICE_ENV] = settings.model_dump_json()
    uvicorn.run(
        "orchestrator.service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.lower(),
    )


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
