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

from pydantic import BaseModel, ConfigDict, Field

from aggregators import wilson_interval
from common.errors import BadInput, NotFound
from eval.report_experts import (
    Answer,
    Choice,
    ExpertSummary,
    accuracy_ratio,
    reference_choice,
    reference_hits,
    summarise_experts,
)
from eval.report_markdown import render_markdown
from eval.results import QuestionResult, RunInfo, declares_costs, read_results, read_run

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
        None,
        description="Mean cost of the experts consulted per answer, in the run's cost unit "
        "(None: the pool declares no costs, or the run recorded none).",
    )
    cost_ratio: float | None = Field(None, description="cost_per_question over the reference's (Summary).")
    accuracy_ratio: float | None = Field(
        None,
        description="Accuracy over the reference expert's on the answers both gave (None: no reference, or it "
        "gave none of them right).",
    )
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
    experts: list[ExpertSummary] = Field(
        default_factory=list, description="Every expert that the results hold an answer of, over its own answers."
    )
    skipped: dict[str, str]
    usage_method: str | None = Field(None, description="The method whose expert usage is tabulated.")
    usage: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per category, per expert: share of the category's answers where usage_method consulted it.",
    )
    cost: RunCost
    cost_unit: str | None = Field(
        None,
        description="active_params_b, usd_per_mtok or calls (None: the run recorded no costs). With calls (the "
        "pool declares no costs) every cost field is None.",
    )
    cost_reference: str | None = Field(
        None,
        description="The reference expert, what accuracy and cost ratios are against (None: the pool declares no "
        "costs and the run named none).",
    )
    reference_choice: Choice | None = Field(
        None, description="costliest: the pool's costliest expert (the default); given: named with --reference."
    )
    reference_cost: float | None = Field(
        None,
        description="The reference's cost per answer (None: no costs declared, or it never ran and its cost "
        "depends on tokens).",
    )

    @property
    def costs_declared(self) -> bool:
        """Whether the pool declared costs (active parameters or prices): only then are costs shown."""
        return declares_costs(self.cost_unit)

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
