"""``coe calibrate``: fit a routing policy's thresholds to a cost or accuracy target, store them in
the pool (``policies/<policy>.v<N>.json``), and print what they reach and the curve."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from orchestrator.cli_options import BenchmarkOpt, DataOpt, JsonOpt, PoolOpt, SeedOpt, SplitOpt

CalibratePolicyOpt = Annotated[
    str, typer.Option("--policy", help="The policy to calibrate: cascade, adaptive, top-p, routellm or topk.")
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
    policy: CalibratePolicyOpt = "cascade",
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
    activated (--activate, or 'coe activate --policy POLICY=N')."""
    from common.errors import BadInput
    from eval import load_benchmark
    from orchestrator.calibrating import calibrate_pool
    from orchestrator.cli_eval import pick_part
    from orchestrator.profiling import sample
    from orchestrator.progress import LiveProgress
    from orchestrator.sdk import Orchestrator
    from orchestrator.settings import load_settings

    if (max_cost is None) == (min_accuracy is None):
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
