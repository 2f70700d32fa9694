"""The report of one evaluation run, rebuilt from ``run.json`` and ``results.jsonl`` alone.

``summarise`` turns the run's records into a ``Summary`` (numbers only, no I/O);
``eval.report_markdown.render_markdown`` writes it as ``report.md``; ``write_report`` does both
for a run folder, with ``report.json`` and the plots beside them.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from aggregators import wilson_interval
from common.errors import BadInput, NotFound
from common.pause_gc import paused_gc
from eval.report_experts import (
    Answer,
    accuracy_ratio,
    reference_choice,
    reference_hits,
    summarise_experts,
)
from eval.report_markdown import render_markdown
from eval.results import QuestionResult, RunInfo, declares_costs, read_results, read_run
from eval.summary import MethodSummary, RunCost, SampleSpread, Score, Summary

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
NO_CATEGORY = "(none)"
USAGE_METHOD = "ours"


def category_of(result: QuestionResult) -> str:
    return result.category if result.category else NO_CATEGORY


def method_order(info: RunInfo, results: Sequence[QuestionResult]) -> list[str]:
    """The methods in run.json's order, then any the results hold that run.json does not name (sorted)."""
    named = [m.name for m in info.methods]
    extra = sorted({name for r in results for name in r.methods} - set(named))
    return named + extra


def _score(hits: Sequence[bool]) -> Score:
    right = sum(hits)
    return Score(correct=right, n=len(hits), accuracy=right / len(hits) if hits else 0.0)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _spread(by_sample: dict[int, list[bool]]) -> SampleSpread:
    per_sample = {s: _score(by_sample[s]) for s in sorted(by_sample)}
    accuracies = [score.accuracy for score in per_sample.values()]
    error = statistics.stdev(accuracies) / math.sqrt(len(accuracies)) if len(accuracies) > 1 else None
    return SampleSpread(mean=_mean(accuracies), standard_error=error, per_sample=per_sample)


def _check_unique(results: Sequence[QuestionResult]) -> None:
    seen: set[tuple[str, int]] = set()
    for result in results:
        key = (result.question_id, result.sample)
        if key in seen:
            raise BadInput(f"question {result.question_id!r} sample {result.sample} appears twice in the results")
        seen.add(key)


def reference_cost(info: RunInfo, results: Sequence[QuestionResult]) -> float | None:
    """What cost ratios are measured against, per answer: the reference expert alone (its
    declared cost per call in active parameters; its mean cost over the answers it gave when
    the price is per token). None when the pool declares no costs (or the run recorded none),
    there is no reference, or the reference never ran at a per-token price."""
    ref = info.cost_reference
    if not declares_costs(info.cost_unit) or ref is None:
        return None
    if info.cost_unit == "active_params_b" and ref in info.costs:
        return info.costs[ref]
    paid = [e.cost for r in results for e in r.experts if e.expert == ref and e.error is None]
    return _mean(paid) if paid else None


def _summarise_method(
    name: str,
    info: RunInfo,
    results: Sequence[QuestionResult],
    categories: list[str],
    reference: float | None = None,
    reference_right: dict[Answer, bool] | None = None,
) -> MethodSummary:
    described = {m.name: m for m in info.methods}.get(name)
    answered = [(r, r.methods[name]) for r in results if name in r.methods]
    scored = [(r, m.correct) for r, m in answered if m.correct is not None]  # None: no gold answer
    overall = _score([hit for _, hit in scored])
    by_category: dict[str, list[bool]] = defaultdict(list)
    by_sample: dict[int, list[bool]] = defaultdict(list)
    for result, hit in scored:
        by_category[category_of(result)].append(hit)
        by_sample[result.sample].append(hit)
    aggregations = sorted({m.aggregation for _, m in answered})
    cost = _mean([m.cost for _, m in answered]) if declares_costs(info.cost_unit) else None
    cascade = [m for _, m in answered if m.escalations]
    return MethodSummary(
        name=name,
        description=described.description if described else "(not described in run.json)",
        baseline=described.baseline if described else True,
        aggregation=described.aggregation if described else ", ".join(aggregations),
        correct=overall.correct,
        n=overall.n,
        accuracy=overall.accuracy,
        ci95=wilson_interval(overall.correct, overall.n),
        experts_per_question=_mean([len(m.experts) for _, m in answered]),
        tokens_in_per_question=_mean([m.tokens_in for _, m in answered]),
        tokens_out_per_question=_mean([m.tokens_out for _, m in answered]),
        seconds_per_question=_mean([m.seconds for _, m in answered]),
        samples=_spread(by_sample) if info.samples > 1 else None,
        per_category={c: _score(by_category[c]) for c in categories if by_category[c]},
        cost_per_question=cost,
        cost_ratio=cost / reference if cost is not None and reference else None,
        accuracy_ratio=accuracy_ratio((((r.question_id, r.sample), hit) for r, hit in scored), reference_right or {}),
        escalated=_mean([m.escalations[0].escalate for m in cascade]) if cascade else None,
        aggregator_skipped=sum(1 for _, m in answered if m.skipped is not None),
        aggregator_called=sum(1 for _, m in answered if m.aggregation == "synthesis" and m.skipped is None),
    )


def expert_usage(results: Sequence[QuestionResult], method: str) -> dict[str, dict[str, float]]:
    """Per category (sorted), per expert (sorted; every expert of the results): the share of
    the category's answers where ``method`` consulted that expert."""
    experts = sorted(
        {e.expert for r in results for e in r.experts}
        | {name for r in results if method in r.methods for name in r.methods[method].experts}
    )
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(experts, 0))
    totals: dict[str, int] = defaultdict(int)
    for result in results:
        if method not in result.methods:
            continue
        category = category_of(result)
        totals[category] += 1
        for name in set(result.methods[method].experts):
            counts[category][name] += 1
    return {c: {e: counts[c][e] / totals[c] for e in experts} for c in sorted(totals)}


def summarise(info: RunInfo, results: Sequence[QuestionResult]) -> Summary:
    """The run in numbers: per method accuracy (Wilson 95% interval), per category accuracy,
    experts, tokens and generation seconds per answer, the spread over samples, the cost; per
    expert its accuracy over its own answers."""
    _check_unique(results)
    categories = sorted({category_of(r) for r in results})
    names = method_order(info, results)
    usage_method = USAGE_METHOD if USAGE_METHOD in names else None
    reference = reference_cost(info, results)
    right = reference_hits(results, info.cost_reference)
    return Summary(
        benchmark=info.benchmark,
        benchmark_version=info.benchmark_version,
        split=info.split,
        pool=info.pool,
        policy=info.policy,
        k=info.k,
        aggregator=info.aggregator,
        samples=info.samples,
        seed=info.seed,
        limit=info.limit,
        questions=len({r.question_id for r in results}),
        questions_planned=info.questions,
        questions_in_split=info.questions_in_split,
        answers=len(results),
        categories=categories,
        methods=[_summarise_method(name, info, results, categories, reference, right) for name in names],
        experts=summarise_experts(info, results),
        skipped=dict(sorted(info.skipped.items())),
        usage_method=usage_method,
        usage=expert_usage(results, usage_method) if usage_method else {},
        cost=RunCost(
            model_loads=info.model_loads,
            generations=info.generations,
            reused=info.reused,
            retried=info.retried,
            stage_seconds=dict(info.stage_seconds),
            run_id=info.run_id,
            started=info.started,
            finished=info.finished,
            command=info.command,
        ),
        cost_unit=info.cost_unit,
        cost_reference=info.cost_reference,
        reference_choice=reference_choice(info),
        reference_cost=reference,
    )


@paused_gc()
def write_report(
    directory: Path,
    info: RunInfo | None = None,
    results: Sequence[QuestionResult] | None = None,
    *,
    plots: bool = True,
) -> list[Path]:
    """Rebuild a run's report from its ``run.json`` and ``results.jsonl``: write ``report.md``,
    ``report.json`` and the plots into the folder; return the paths written. ``info`` and
    ``results``: what those files hold, when the caller has just written them (not read again).
    ``plots=False``: no plots (``eval.plots.write_plots`` draws them from ``report.json``)."""
    from common.artefacts import replace_file
    from eval.plots import write_plots

    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"{directory} does not exist or is not a folder")
    if (info is None) != (results is None):
        raise BadInput("write_report takes the run's info and results together, or neither")
    if info is None or results is None:
        info, results = read_run(directory), read_results(directory)
    summary = summarise(info, results)
    written = [
        replace_file(directory / REPORT_MD, render_markdown(summary)),
        replace_file(directory / REPORT_JSON, summary.model_dump_json(indent=1) + "\n"),
    ]
    return written + write_plots(summary, directory) if plots else written
