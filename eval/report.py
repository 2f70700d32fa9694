"""The report of one evaluation run, rebuilt from ``run.json`` and ``results.jsonl`` alone.

``summarise`` turns the run's records into a ``Summary`` (numbers only, no I/O);
``render_markdown`` writes it as ``report.md``; ``write_report`` does both for a run folder,
with ``report.json`` and the plots beside them.

Everything in ``report.md`` above its last section ("Cost of this run") depends only on the
results and the run's configuration, never on timings or dates: a run killed and resumed
gives the same text there.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from aggregators import wilson_interval
from common.errors import BadInput, NotFound
from eval.results import QuestionResult, RunInfo, read_results, read_run

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
NO_CATEGORY = "(none)"
USAGE_METHOD = "ours"


class Score(BaseModel):
    """Right answers out of ``n`` and their share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correct: int
    n: int
    accuracy: float


class SampleSpread(BaseModel):
    """A method's accuracy over the run's samples: the mean of the per-sample accuracies ± its
    standard error (sample standard deviation / sqrt(samples); None with fewer than two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    standard_error: float | None
    per_sample: dict[int, Score] = Field(..., description="Accuracy of each sample, by sample index.")


class MethodSummary(BaseModel):
    """One method over the whole run (every question and sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    baseline: bool
    aggregation: str
    correct: int
    n: int = Field(..., description="Answers scored: questions × samples where the method ran.")
    accuracy: float
    ci95: tuple[float, float] = Field(..., description="Wilson score interval of the accuracy.")
    experts_per_question: float
    tokens_in_per_question: float
    tokens_out_per_question: float
    seconds_per_question: float = Field(..., description="Mean generation seconds (a timing: cost section only).")
    samples: SampleSpread | None = Field(None, description="Mean ± standard error over samples (samples > 1).")
    per_category: dict[str, Score]
    cost_per_question: float | None = Field(
        None, description="Mean cost of the experts consulted per answer, in the run's cost unit (None: not recorded)."
    )
    cost_ratio: float | None = Field(None, description="cost_per_question over the reference's (Summary).")
    escalated: float | None = Field(
        None, description="A cascade: share of answers that climbed past the first rung (None: no cascade)."
    )


class RunCost(BaseModel):
    """What the run cost: the only part of the report that may differ between a run and its resumption."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_loads: int
    generations: int
    reused: int
    stage_seconds: dict[str, float]
    run_id: str
    started: str
    finished: str
    command: str


class Summary(BaseModel):
    """The whole report as numbers (``report.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str
    benchmark_version: str
    split: str
    pool: str
    policy: str
    k: int | None
    aggregator: str
    samples: int
    seed: int
    limit: int | None
    questions: int = Field(..., description="Distinct questions in the results.")
    questions_planned: int = Field(..., description="Questions the run set out to evaluate (run.json).")
    questions_in_split: int
    answers: int = Field(..., description="Lines of results.jsonl: questions × samples.")
    categories: list[str]
    methods: list[MethodSummary]
    skipped: dict[str, str]
    usage_method: str | None = Field(None, description="The method whose expert usage is tabulated.")
    usage: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per category, per expert: share of the category's answers where usage_method consulted it.",
    )
    cost: RunCost
    cost_unit: str | None = Field(
        None, description="active_params_b, usd_per_mtok or calls (None: the run recorded no costs)."
    )
    cost_reference: str | None = Field(
        None, description="The expert cost ratios are against: the pool's costliest (None: one expert call)."
    )
    reference_cost: float | None = Field(
        None, description="The reference's cost per answer (None: it never ran and its cost depends on tokens)."
    )

    def method(self, name: str) -> MethodSummary:
        for one in self.methods:
            if one.name == name:
                return one
        raise NotFound(f"method {name!r} is not in this run; it has {', '.join(m.name for m in self.methods)}")


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
    """What cost ratios are measured against, per answer: the costliest expert alone (its
    declared cost per call in active parameters; its mean cost over the answers it gave when
    the price is per token), or one expert call when the pool declares no costs (the best single
    expert's cost). None when costs were not recorded, or the reference never ran at a per-token price."""
    if info.cost_unit is None:
        return None
    ref = info.cost_reference
    if ref is None:
        return 1.0
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
    cost = _mean([m.cost for _, m in answered]) if info.cost_unit is not None else None
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
        escalated=_mean([m.escalations[0].escalate for m in cascade]) if cascade else None,
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
    experts, tokens and generation seconds per answer, the spread over samples, the cost."""
    _check_unique(results)
    categories = sorted({category_of(r) for r in results})
    names = method_order(info, results)
    usage_method = USAGE_METHOD if USAGE_METHOD in names else None
    reference = reference_cost(info, results)
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
        methods=[_summarise_method(name, info, results, categories, reference) for name in names],
        skipped=dict(sorted(info.skipped.items())),
        usage_method=usage_method,
        usage=expert_usage(results, usage_method) if usage_method else {},
        cost=RunCost(
            model_loads=info.model_loads,
            generations=info.generations,
            reused=info.reused,
            stage_seconds=dict(info.stage_seconds),
            run_id=info.run_id,
            started=info.started,
            finished=info.finished,
            command=info.command,
        ),
        cost_unit=info.cost_unit,
        cost_reference=info.cost_reference,
        reference_cost=reference,
    )


# --- Markdown -------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or " "


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def interval(bounds: tuple[float, float]) -> str:
    return f"{100 * bounds[0]:.1f}–{100 * bounds[1]:.1f}%"


def cost_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def render_methods_table(summary: Summary) -> str:
    """The methods table alone: method, description, accuracy, 95% interval, experts and tokens
    per answer, and (when the run recorded costs) cost per answer and its ratio to the reference."""
    costs = summary.cost_unit is not None
    rows = [
        [
            f"**{m.name}**" if not m.baseline else m.name,
            m.description,
            f"{pct(m.accuracy)} ({m.correct}/{m.n})",
            interval(m.ci95),
            f"{m.experts_per_question:.2f}",
            f"{m.tokens_in_per_question:.0f} / {m.tokens_out_per_question:.0f}",
        ]
        + ([cost_text(m.cost_per_question), "–" if m.cost_ratio is None else f"{m.cost_ratio:.2f}"] if costs else [])
        for m in summary.methods
    ]
    header = ["method", "description", "accuracy", "95% interval", "experts/question", "tokens/question (in / out)"]
    header += ["cost/question", "cost ratio"] if costs else []
    return "\n".join(_table(header, rows, [False, False] + [True] * (len(header) - 2)))


UNITS = {
    "active_params_b": "billions of active parameters per expert call (the pool's declared costs)",
    "usd_per_mtok": "US dollars: each expert's price per million tokens times the tokens it read and wrote",
    "calls": "expert calls (the pool declares no costs: every call counts 1)",
}


def _cost_note(summary: Summary) -> list[str]:
    """What the cost columns count and what the ratio is against; a cascade's climbs."""
    if summary.cost_unit is None:
        return []
    unit = UNITS.get(summary.cost_unit, summary.cost_unit)
    if summary.cost_reference is None:
        against = "one expert call (the best single expert alone)"
    else:
        alone = cost_text(summary.reference_cost) if summary.reference_cost is not None else "not measured"
        against = f"the pool's costliest expert alone, {summary.cost_reference} ({alone} per answer)"
    lines = [
        f"Cost: {unit}, summed over the experts a method consulted (the aggregator's call not "
        f"counted; the oracle: every expert it looked at), mean per answer. Cost ratio: against {against}.",
        "",
    ]
    climbs = [m for m in summary.methods if m.escalated is not None]
    if climbs:
        shares = ", ".join(f"{m.name} {pct(m.escalated or 0.0)}" for m in climbs)
        lines += [
            f"Cascades climbed past their first rung on: {shares} of answers. Eval asks every rung of a "
            "cascade's ladder and plays its escalation on those answers (the decisions the SDK's rounds "
            "reach); its cost counts only the rungs it climbed.",
            "",
        ]
    return lines


def _samples_section(summary: Summary) -> list[str]:
    indices = sorted({s for m in summary.methods if m.samples for s in m.samples.per_sample})
    rows = []
    for m in summary.methods:
        if m.samples is None:
            continue
        error = f" ± {pct(m.samples.standard_error)}" if m.samples.standard_error is not None else " (one sample)"
        scores = m.samples.per_sample
        rows.append(
            [m.name, pct(m.samples.mean) + error] + [pct(scores[s].accuracy) if s in scores else "–" for s in indices]
        )
    header = ["method", "mean ± standard error"] + [f"sample {s}" for s in indices]
    return [
        "## Accuracy over samples",
        "",
        f"Each question was answered {summary.samples} times; the mean of the per-sample accuracies "
        "± its standard error (standard deviation over samples / √samples).",
        "",
        *_table(header, rows, [False] + [True] * (len(header) - 1)),
        "",
    ]


def _category_section(summary: Summary) -> list[str]:
    rows = []
    for category in summary.categories:
        counts = [m.per_category[category].n for m in summary.methods if category in m.per_category]
        row = [category, str(max(counts, default=0))]
        for m in summary.methods:
            score = m.per_category.get(category)
            row.append(pct(score.accuracy) if score else "–")
        rows.append(row)
    header = ["category", "answers"] + [m.name for m in summary.methods]
    return ["## Accuracy per category", "", *_table(header, rows, [False] + [True] * (len(header) - 1)), ""]


def _cost_section(summary: Summary) -> list[str]:
    cost = summary.cost
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in cost.stage_seconds.items()) or "not recorded"
    seconds = ", ".join(f"{m.name} {m.seconds_per_question:.2f} s" for m in summary.methods) or "none"
    lines = [
        "## Cost of this run",
        "",
        f"- model loads: {cost.model_loads}",
        f"- generations: {cost.generations} made, {cost.reused} reused from the run's store",
        f"- wall time per stage: {stages}",
        f"- generation seconds per question: {seconds}",
    ]
    if cost.run_id:
        lines.append(f"- run id: {cost.run_id}")
    if cost.started or cost.finished:
        lines.append(f"- started {cost.started or '?'}, finished {cost.finished or '?'}")
    if cost.command:
        lines.append(f"- command: `{cost.command}`")
    return lines + [""]


def render_markdown(summary: Summary) -> str:
    """``report.md``: title, methods, samples (if several), categories, skipped baselines, then cost."""
    k = f", k={summary.k}" if summary.k is not None else ""
    limit = f", limit {summary.limit}" if summary.limit is not None else ""
    lines = [
        f"# {summary.benchmark} ({summary.split}): pool {summary.pool}, policy {summary.policy}",
        "",
        f"Benchmark version {summary.benchmark_version}; {summary.questions} of {summary.questions_planned} "
        f"questions evaluated ({summary.questions_in_split} in the split{limit}, seed {summary.seed}), "
        f"{summary.samples} sample{'s' if summary.samples != 1 else ''} each: {summary.answers} answers. "
        f"Policy {summary.policy}{k}; ours combines answers by {summary.aggregator}.",
        "",
        "## Methods",
        "",
        render_methods_table(summary),
        "",
        "Accuracy over every answer (questions × samples) with its 95% Wilson interval; "
        "experts and tokens are means per answer. Bold: not a baseline.",
        "",
        *_cost_note(summary),
    ]
    if summary.samples > 1:
        lines += _samples_section(summary)
    if summary.categories:
        lines += _category_section(summary)
    lines += ["## Skipped baselines", ""]
    lines += [f"- {name}: {why}" for name, why in summary.skipped.items()] or ["None."]
    lines.append("")
    lines += _cost_section(summary)
    return "\n".join(lines)


def write_report(directory: Path) -> list[Path]:
    """Rebuild a run's report from its ``run.json`` and ``results.jsonl``: write ``report.md``,
    ``report.json`` and the plots into the folder; return the paths written."""
    from common.artefacts import replace_file
    from eval.plots import write_plots

    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"{directory} does not exist or is not a folder")
    summary = summarise(read_run(directory), read_results(directory))
    written = [
        replace_file(directory / REPORT_MD, render_markdown(summary)),
        replace_file(directory / REPORT_JSON, summary.model_dump_json(indent=1) + "\n"),
    ]
    return written + write_plots(summary, directory)
