"""``coe calibrate``: fit a routing policy's thresholds to a cost or accuracy target, store them in
the pool (``policies/<policy>.v<N>.json``), and print what they reach and the curve; or, with
``--aggregator-skip``, fit when the aggregator is skipped (``aggregator/skip.v<N>.json``)."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import BenchmarkOpt, DataOpt, JsonOpt, PoolOpt, SeedOpt, SplitOpt, pick_part

if TYPE_CHECKING:
    from orchestrator.workflows.calibrate import SkipReport

CalibratePolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="The policy to calibrate: cascade (the default), adaptive, top-p, routellm or topk; with "
        "--aggregator-skip, the policy choosing the experts (default: the settings').",
    ),
]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--aggregator-skip",
        help="Fit when the aggregator is skipped (the experts' agreement and competence) instead of a policy.",
    ),
]
ToleranceOpt = Annotated[
    float,
    typer.Option(
        "--tolerance",
        min=0.0,
        max=100.0,
        help="--aggregator-skip: accuracy points the rule may lose against always aggregating.",
    ),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option("--max-cost", min=0.0, help="Cost per question, as a share of the reference expert's (e.g. 0.6)."),
]
MinAccuracyOpt = Annotated[
    float | None,
    typer.Option(
        "--min-accuracy",
        min=0.0,
        max=1.5,
        help="Accuracy, as a share of the reference expert's (e.g. 0.95).",
    ),
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        "--reference", help="The expert the target is measured against (default: the costliest, else the best)."
    ),
]


def calibrate_command(
    policy: CalibratePolicyOpt = None,
    aggregator_skip: SkipOpt = False,
    tolerance: ToleranceOpt = 0.1,
    max_cost: MaxCostOpt = None,
    min_accuracy: MinAccuracyOpt = None,
    reference: ReferenceOpt = None,
    benchmark: BenchmarkOpt = "mmlu_pro",
    split: SplitOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Questions sampled (seeded).")] = None,
    seed: SeedOpt = 0,
    whole_split: Annotated[
        bool, typer.Option("--whole-split", help="Sample the whole split, not only its profiling half.")
    ] = False,
    pool: PoolOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
    activate: Annotated[
        bool, typer.Option("--activate", help="Route with the new calibration at once (else: 'coe activate --policy').")
    ] = False,
) -> None:
    """Fit POLICY's thresholds on the profiling half of the split to --max-cost or --min-accuracy
    and store them as the policy's next version in the pool; the pool routes with it once it is
    activated (--activate, or 'coe activate --policy POLICY=N'). With --aggregator-skip, fit the
    agreement level and competence bar that skip the aggregator while accuracy stays within
    --tolerance points of always aggregating (activated by --activate or 'coe activate --skip N')."""
    from common.errors import BadInput
    from eval import load_benchmark
    from orchestrator.cli.progress import LiveProgress
    from orchestrator.pools.settings import load_settings
    from orchestrator.sdk import Orchestrator
    from orchestrator.workflows.calibrate import calibrate_pool, calibrate_skip
    from orchestrator.workflows.profile import sample

    if aggregator_skip and (max_cost is not None or min_accuracy is not None):
        raise BadInput("--aggregator-skip takes --tolerance, not --max-cost or --min-accuracy")
    if not aggregator_skip and (max_cost is None) == (min_accuracy is None):
        raise BadInput("give exactly one target: --max-cost or --min-accuracy")
    settings = load_settings(pool=pool, data_dir=data_dir)
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bench = load_benchmark(benchmark)
    split = split or bench.default_split
    every = bench.questions(settings.data_dir, split)
    part, which = pick_part(every, split, whole_split, "profiling")
    questions = sample(part, limit, seed)
    if aggregator_skip:
        what = "the aggregator's skip rule"
        print(f"calibrating {what} on {bench.name} {split}, {which}: {len(questions)} questions", file=sys.stderr)
        with LiveProgress() as display:
            coe = Orchestrator(settings, progress=display)
            skip = calibrate_skip(coe, questions, bench, policy=policy, tolerance=tolerance / 100, activate=activate)
        print_skip(skip, as_json)
        return
    policy = policy or "cascade"
    print(f"calibrating {policy} on {bench.name} {split}, {which}: {len(questions)} questions", file=sys.stderr)
    with LiveProgress() as display:
        coe = Orchestrator(settings, progress=display)
        report = calibrate_pool(
            coe,
            questions,
            bench,
            policy,
            max_cost=max_cost,
            min_accuracy=min_accuracy,
            reference=reference,
            activate=activate,
        )
    cal = report.calibration
    if as_json:
        print(json.dumps({"path": str(report.path), "active": report.active, **cal.model_dump(mode="json")}, indent=1))
        return
    got = cal.achieved
    target = f"cost <= {max_cost:g}" if max_cost is not None else f"accuracy >= {min_accuracy:g}"
    print(
        f"{policy}: {', '.join(f'{k} = {v:g}' for k, v in cal.selection.items())} ({target} of {cal.target.reference})"
    )
    print(
        f"on {report.questions} questions: accuracy {got.accuracy:.4f} ({got.accuracy_ratio:.3f} of the reference's "
        f"{cal.reference_accuracy:.4f}), cost {got.cost_ratio:.3f} of the reference's, "
        f"{got.experts_per_question:.2f} experts per question"
        + (f", {got.escalated:.0%} escalated" if policy == "cascade" else "")
    )
    if report.left_out:
        print(f"{report.left_out} question(s) left out: some expert gave no answer")
    version = report.path.name.removeprefix(f"{policy}.v").removesuffix(".json")
    if report.active:
        print(f"stored: {report.path}; the pool now routes {policy} with it")
    else:
        print(f"stored: {report.path}; not active: route with it by 'coe activate --policy {policy}={version}'")
    print(f"{'setting':>24} {'accuracy':>8} {'acc/ref':>7} {'cost/ref':>8} {'experts':>7}")
    for p in cal.curve:
        mark = "  <- chosen" if p.value == got.value and p.fixed == got.fixed else ""
        setting = " ".join(f"{k}={v:g}" for k, v in {**p.fixed, list(cal.selection)[-1]: p.value}.items())
        print(
            f"{setting:>24} {p.accuracy:>8.4f} {p.accuracy_ratio:>7.3f} {p.cost_ratio:>8.3f} "
            f"{p.experts_per_question:>7.2f}{mark}"
        )


def print_skip(report: SkipReport, as_json: bool) -> None:
    """What a fitted skip rule reaches, where it is stored, and the settings around it."""
    cal = report.calibration
    if as_json:
        print(json.dumps({"path": str(report.path), "active": report.active, **cal.model_dump(mode="json")}, indent=1))
        return
    got = cal.achieved
    if cal.level is None:
        print("aggregator skip: never (no setting saved a call within the tolerance)")
    else:
        bar = f"their mean competence >= {cal.bar:g}" if cal.bar is not None else "any competence"
        print(f"aggregator skip: when >= {cal.level:g} of the experts agree, {bar}")
    print(
        f"on {report.questions} questions: accuracy {got.accuracy:.4f} against {cal.accuracy_always:.4f} always "
        f"aggregating (tolerance {cal.tolerance * 100:g} points), {got.calls_saved:.1%} of the aggregator calls saved"
    )
    if report.left_out:
        print(f"{report.left_out} question(s) left out: no aggregation")
    version = report.path.name.removeprefix("skip.v").removesuffix(".json")
    if report.active:
        print(f"stored: {report.path}; the pool now skips by it")
    else:
        print(f"stored: {report.path}; not active: skip by it with 'coe activate --skip {version}'")
    print(f"{'level':>6} {'bar':>6} {'accuracy':>8} {'saved':>7}")
    for p in sorted(cal.curve, key=lambda p: (-p.calls_saved, -p.accuracy))[:12]:
        mark = "  <- chosen" if (p.level, p.bar) == (got.level, got.bar) else ""
        bar_text = "-" if p.bar is None else f"{p.bar:g}"
        print(f"{p.level or 0:>6g} {bar_text:>6} {p.accuracy:>8.4f} {p.calls_saved:>7.1%}{mark}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
