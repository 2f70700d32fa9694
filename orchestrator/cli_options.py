"""Option types shared by the CLI commands; defaults come from the settings object."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.vocabulary import CacheMode, ScorerKind

if TYPE_CHECKING:
    from orchestrator.settings import Settings


def command_settings(**overrides: object) -> Settings:
    """The settings a command runs with (``load_settings`` with its options), logging configured
    from them (library code only logs; the command, as the entry point, configures)."""
    from orchestrator.settings import load_settings

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
