"""Option types shared by the CLI commands; defaults come from the settings object."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.vocabulary import CacheMode, ExecutorKind, ScorerKind

if TYPE_CHECKING:
    from orchestrator.pools.settings import JobSettings, Settings


def command_settings(**overrides: object) -> Settings:
    """The settings a command runs with (``load_settings`` with its options), logging configured
    from them (library code only logs; the command, as the entry point, configures)."""
    from orchestrator.pools.settings import load_settings

    settings = load_settings(**overrides)
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


PoolOpt = Annotated[Path | None, typer.Option("--pool", help="Pool directory (default: settings.pool).")]
PolicyOpt = Annotated[str | None, typer.Option("--policy", help="Routing policy (default: settings.policy).")]
KOpt = Annotated[
    int | None, typer.Option("--k", "-k", min=1, max=64, help="Experts per question (default: settings.k).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Model cache (default: settings.cache_dir).")]
DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="Shared data folder (default: settings.data_dir).")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Generation cache and batch jobs: a redis:// URL or an SQLite file (default: settings.store).",
    ),
]
NoSkipOpt = Annotated[
    bool,
    typer.Option(
        "--no-skip", help="Always call the aggregator, even when the experts agree (default: skip on consensus)."
    ),
]
CacheModeOpt = Annotated[
    CacheMode | None,
    typer.Option("--cache", help="use, refresh (write only) or off (default: settings.cache)."),
]
BenchmarkOpt = Annotated[
    str,
    typer.Option("--benchmark", "-b", help="A built-in benchmark (mmlu_pro, gpqa, aime, medmcqa, ...) or a spec file."),
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Benchmark split (default: the benchmark's own).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the question sample.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, help="How many questions.")]
ScorerOpt = Annotated[
    ScorerKind, typer.Option("--scorer", help="classifier (the pool's skill classifier) or keywords (LLM annotation).")
]


def pick_part(every: list, split: str, whole: bool, purpose: str) -> tuple[list, str]:
    """The part of a split a command works on, and a phrase saying which.

    Profiling samples the profiling half and evaluation the other half (``eval.partition``: a
    fixed split by question id), so the two never overlap; ``--whole-split`` takes everything.
    A split made for one purpose (``*_train`` to profile, ``*_test`` to report) is taken whole.
    """
    from eval import partition

    dedicated = split.endswith("_test") if purpose == "evaluation" else split.endswith("_train")
    if whole or dedicated:
        return list(every), "the whole split"
    profiling, evaluation = partition(every)
    if purpose == "evaluation":
        return evaluation, "its evaluation half, disjoint from the profiling half"
    return profiling, "its profiling half, disjoint from the evaluation half"


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
    from orchestrator.pools.settings import JobSettings

    try:
        return JobSettings.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, "job settings") from exc


ExecutorOpt = Annotated[
    ExecutorKind | None,
    typer.Option(
        "--executor",
        help="Where planned groups run: local (this process) or ray (actors on a Ray cluster; "
        "pip install 'symbolic-coe[ray]') (default: settings.executor).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The Ray cluster to join with --executor ray: auto (the one this machine belongs to) or "
        "HOST:6379 (default: RAY_ADDRESS, else a Ray started on this machine).",
    ),
]
DevicesOpt = Annotated[
    int | None,
    typer.Option(
        "--devices", min=1, max=64, help="Devices (GPUs) the plan spreads phases over (default: settings.devices)."
    ),
]


HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]


def free_to_listen(host: str, port: int) -> None:
    """BadInput when ``host:port`` cannot be bound now (in use, no such address)."""
    import socket

    from common.errors import BadInput

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host!r} is not an address of this machine: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
