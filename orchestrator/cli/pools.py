"""``coe profile``, ``coe activate`` and ``coe models``: what a pool knows of its experts, which
versions it routes with, and the packaged models."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestrator.cli.options import (
    BenchmarkOpt,
    CacheOpt,
    DataOpt,
    PoolOpt,
    SeedOpt,
    SplitOpt,
    command_settings,
    pick_part,
)


def register(app: typer.Typer) -> None:
    app.command()(profile)
    app.command()(activate)
    models = typer.Typer(no_args_is_help=True, help="The packaged default models.")
    models.command("prepare")(models_prepare)
    app.add_typer(models, name="models")


def profile(
    benchmark: BenchmarkOpt = "mmlu_pro",
    split: SplitOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Questions sampled (seeded).")] = None,
    seed: SeedOpt = 0,
    classifier: Annotated[bool, typer.Option(help="Also train the skill classifier.")] = True,
    whole_split: Annotated[
        bool,
        typer.Option(
            "--whole-split", help="Sample the whole split, not only its profiling half (overlaps evaluation)."
        ),
    ] = False,
    activate: Annotated[
        bool, typer.Option(help="Route with the new versions at once (a pool's first profile always does).")
    ] = False,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="Sentence encoder of the classifier: all-MiniLM-L6-v2 (default, torch), all-MiniLM-L6-v2-onnx, "
            "all-MiniLM-L6-v2-onnx-int8 (fastest), or a sentence-transformers folder. Routing uses the same one.",
        ),
    ] = None,
    pool: PoolOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Build the pool's skill profile (replay experts from recordings, others live) and classifier,
    as new versions; by default from the profiling half of the split, disjoint from evaluation."""
    from eval import load_benchmark
    from orchestrator.cli.progress import LiveProgress
    from orchestrator.pipeline.items import check_recordings
    from orchestrator.pools.pool import load_pool
    from orchestrator.sdk import Orchestrator
    from orchestrator.workflows.profile import profile_pool, sample
    from skills import make_embedder

    settings = command_settings(pool=pool, data_dir=data_dir)
    make_embedder(encoder, cache_dir=settings.encoders_dir)  # an unknown name fails here, before any work
    bench = load_benchmark(benchmark)
    the_pool = load_pool(settings.pool, settings.data_dir)
    check_recordings(the_pool, bench.item_benchmark)  # before any work: recordings of another benchmark
    split = split or bench.default_split
    every = bench.questions(settings.data_dir, split)
    part, which = pick_part(every, split, whole_split, "profiling")
    print(
        f"profiling on {bench.name} {split}, {which}: {len(part)} of {len(every)} "
        f"questions{f', {limit} sampled with seed {seed}' if limit and limit < len(part) else ''}",
        file=sys.stderr,
    )
    questions = sample(part, limit, seed)
    with LiveProgress() as display:
        coe = Orchestrator(settings, pool=the_pool, progress=display)
        report = profile_pool(
            coe, questions, classifier=classifier, embedder=encoder, activate=activate, benchmark=bench
        )
    print(f"profile ({report.source}, {report.questions} questions): {report.profile_path}")
    if report.source == "replay":
        print(f"re-judged the recorded answers: {report.relabelled} disagree with the recordings' 'correct' field")
    for path in report.router_paths:
        print(f"router artefact: {path}")
    active = coe.pool.artefacts.active()
    state = "now routes with" if report.active else "still routes with (use --activate or 'coe activate')"
    print(f"pool {coe.pool.name} {state}: {active.model_dump() if active else 'the newest'}")


def activate(
    pool: PoolOpt = None,
    profile_version: Annotated[int | None, typer.Option("--profile", min=1, help="Profile version.")] = None,
    classifier_version: Annotated[int | None, typer.Option("--classifier", min=1, help="Classifier version.")] = None,
    topics_version: Annotated[int | None, typer.Option("--topics", min=1, help="Topics version.")] = None,
    policy_versions: Annotated[
        list[str] | None,
        typer.Option("--policy", help="POLICY=N: route POLICY with its calibration vN (0: uncalibrated); repeatable."),
    ] = None,
    skip_version: Annotated[
        int | None, typer.Option("--skip", min=0, help="The aggregator's fitted skip rule (0: the settings' rule).")
    ] = None,
) -> None:
    """Choose the artefact versions a pool routes with (roll back or forward); without options, list them."""
    from common.errors import BadInput
    from orchestrator.pools.artefacts import PoolArtefacts

    settings = command_settings(pool=pool)
    stored = PoolArtefacts(settings.pool)
    pins: dict[str, int] = {}
    for given in policy_versions or []:
        name, _, number = given.partition("=")
        if not name or not number.isdigit():
            raise BadInput(f"--policy takes POLICY=N (N a calibration version, 0 for none), got {given!r}")
        pins[name] = int(number)
    chosen = (profile_version, classifier_version, topics_version, skip_version)
    if all(v is None for v in chosen) and not pins:
        for kind, found in (
            ("profile", stored.profile_versions()),
            ("classifier", stored.classifier_versions()),
            ("topics", stored.topics_versions()),
            ("skip", stored.skip_versions()),
        ):
            print(f"{kind}: {', '.join(f'v{v}' for v in sorted(found)) or 'none'}")
        for policy in stored.calibrated_policies():
            print(f"policy {policy}: {', '.join(f'v{v}' for v in sorted(stored.calibration_versions(policy)))}")
    else:
        stored.activate(
            profile=profile_version,
            classifier=classifier_version,
            topics=topics_version,
            skip=skip_version,
            policies=pins or None,
        )
    active = stored.active()
    print(f"active: {active.model_dump() if active else 'the newest of each'}")


def models_prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Packaged models (default: all).")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Convert the packaged default models to Hugging Face folders in the cache (once)."""
    from batching.models import PACKAGED, prepare_models

    settings = command_settings(cache_dir=cache_dir)
    prepare_models(names or list(PACKAGED), settings.cache_dir, progress=lambda line: print(line, flush=True))
