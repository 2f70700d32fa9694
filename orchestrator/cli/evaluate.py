"""``coe eval``: evaluate a pool and a policy on a benchmark (built-in or a spec file)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, get_args

import typer

from orchestrator.cli.options import (
    DataOpt,
    DevicesOpt,
    ExecutorOpt,
    JsonOpt,
    KOpt,
    NoSkipOpt,
    PolicyOpt,
    PoolOpt,
    RayAddressOpt,
    StoreOpt,
    command_settings,
    pick_part,
)

AggregatorOpt = Annotated[
    str,
    typer.Option("--aggregator", help="How ours combines answers: synthesis (the LLM), majority or weighted."),
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="The expert accuracy and cost ratios are measured against (default: the pool's costliest; "
        "none when the pool declares no costs).",
    ),
]


def eval_command(
    benchmark: Annotated[str, typer.Argument(help="A built-in benchmark (mmlu_pro, gpqa, aime, ...) or a spec file.")],
    split: Annotated[str | None, typer.Option(help="Benchmark split (default: the benchmark's own).")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Questions: a seeded sample stratified by category.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the question sample.")] = 0,
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    aggregator: AggregatorOpt = "synthesis",
    samples: Annotated[
        int, typer.Option(min=1, max=64, help="Answers per expert and question, each with its own seed.")
    ] = 1,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, max=2.0, help="Experts' temperature (default: each expert's own).")
    ] = None,
    baselines: Annotated[bool, typer.Option("--baselines", help="Run the baselines on the same questions.")] = False,
    whole_split: Annotated[
        bool, typer.Option("--whole-split", help="Evaluate the whole split, not only its evaluation half.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: under settings.runs_dir).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out (same command).")] = False,
    no_skip: NoSkipOpt = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Neither read nor write the generation cache (regenerate everything)."),
    ] = False,
    reference: ReferenceOpt = None,
    data_dir: DataOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    store: StoreOpt = None,
    devices: DevicesOpt = None,
) -> None:
    """Evaluate a pool and a routing policy on a benchmark, with baselines on the same questions:
    route, plan (each model loaded once), generate, aggregate, score; write results.jsonl, run.json,
    report.md and plots. A killed run continues with --resume without regenerating anything."""
    from common.errors import BadInput
    from common.pause_gc import paused_gc
    from common.vocabulary import EvalAggregation
    from eval import load_benchmark, stratified_sample
    from eval.plots import write_plots
    from eval.report import REPORT_JSON, write_report
    from eval.report_markdown import render_methods_table
    from eval.summary import Summary
    from orchestrator.cli.progress import LiveProgress
    from orchestrator.pipeline.items import check_recordings
    from orchestrator.pools.pool import load_pool
    from orchestrator.pools.routing import pool_synthesis
    from orchestrator.sdk import Orchestrator
    from orchestrator.workflows.evaluate import EvalConfig, config_digest, evaluate
    from orchestrator.workflows.out_dir import check_out_dir

    if aggregator not in get_args(EvalAggregation):
        raise BadInput(f"--aggregator must be synthesis, majority or weighted, got {aggregator!r}")
    settings = command_settings(
        pool=pool,
        data_dir=data_dir,
        cache="off" if no_cache else None,
        aggregator_skip=False if no_skip else None,
        executor=executor,
        ray_address=ray_address,
        store=store,
        devices=devices,
    )
    the_pool = load_pool(settings.pool, settings.data_dir)
    if reference is not None and reference not in the_pool.expert_names:
        experts = ", ".join(the_pool.expert_names)
        raise BadInput(f"--reference {reference!r} is not one of the pool's experts ({experts})")
    bench = load_benchmark(benchmark)
    check_recordings(the_pool, bench.item_benchmark)  # before any work: recordings of another benchmark
    split = split or bench.default_split
    every = bench.questions(settings.data_dir, split)
    part, which = pick_part(every, split, whole_split, "evaluation")
    questions = stratified_sample(part, limit, seed) if limit else part
    rule = pool_synthesis(the_pool, settings.consensus)  # the pool's fitted skip rule, else the settings'
    config = EvalConfig(
        benchmark=benchmark if Path(benchmark).suffix != ".toml" else str(Path(benchmark).resolve()),
        split=split,
        limit=limit,
        seed=seed,
        pool_dir=str(settings.pool.resolve()),
        policy=policy or settings.policy,
        k=k,
        aggregator=aggregator,
        samples=samples,
        temperature=temperature,
        baselines=baselines,
        reference=reference,
        skip_agreement=rule.skip_agreement,
        skip_competence=rule.skip_competence,
    )
    out = out or settings.runs_dir / "eval" / f"{bench.name}-{split}-{config_digest(config)}"
    check_out_dir(out, config, resume)  # before any work: a wrong folder is one line, nothing else
    print(
        f"evaluating {bench.name} {split}, {which}: {len(questions)} of {len(every)} questions"
        f"{f' (stratified sample, seed {seed})' if limit and limit < len(part) else ''}; output {out}",
        file=sys.stderr,
    )
    command = shlex.join(["coe", *sys.argv[1:]])
    # The run's millions of objects are acyclic: the collector waits until reference counting
    # has freed them, instead of walking them all once more when it resumes. The plots are drawn
    # after that, from report.json: importing matplotlib leaves frames in reference cycles, and
    # any frame of the stack that held the rows then would keep them all for the collector.
    with paused_gc():
        try:
            with LiveProgress() as display, Orchestrator(settings, pool=the_pool, progress=display) as coe:
                greedy = [
                    n for n in coe.pool.expert_names if (temperature or coe.pool.spec(n).sampling.temperature) == 0
                ]
                if samples > 1 and greedy:
                    print(
                        f"note: {', '.join(greedy)} decode greedily (temperature 0): their samples will agree; "
                        "--temperature sets another",
                        file=sys.stderr,
                    )
                outcome = evaluate(
                    coe,
                    bench,
                    questions,
                    config,
                    out,
                    resume=resume,
                    questions_in_split=len(every),
                    command=command,
                )
        except KeyboardInterrupt:
            interrupted(out, command, resume)
        paths = write_report(out, outcome.info, outcome.results, plots=False)
        del outcome
    summary = Summary.model_validate_json((out / REPORT_JSON).read_text(encoding="utf-8"))
    paths += write_plots(summary, out)
    print(render_methods_table(summary))
    for path in paths:
        print(f"wrote {path}")


def interrupted(out: Path, command: str, resume: bool) -> None:
    """Ctrl-C: what finished is kept in the run store; say how to go on, exit 130 at once (an
    engine call still in flight is not waited for: its process was unloaded). A run that had
    stored nothing leaves nothing behind."""
    from batching.runstore import SQLiteRunStore
    from orchestrator.workflows.out_dir import STORE_FILE, STORE_RUN_ID, discard_if_unused

    kept = 0
    if (out / STORE_FILE).is_file():
        with SQLiteRunStore(out / STORE_FILE) as store:
            kept = store.count(STORE_RUN_ID)
            discard_if_unused(out, store, created=False, resume=resume)
    again = command
    if not resume:
        again += ("" if "--out" in sys.argv else f" --out {shlex.quote(str(out))}") + " --resume"
    if kept:
        print(f"coe: interrupted: {kept} generation(s) kept in {out}; resume with: {again}", file=sys.stderr)
    else:
        print("coe: interrupted before any generation was stored; nothing to resume", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(130)


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


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command()(report)
