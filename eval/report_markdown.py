"""``report.md``: a run's ``Summary`` (``eval.report``) written as Markdown.

Everything above the last section ("Cost of this run") depends only on the results and the
run's configuration, never on timings or dates: a run killed and resumed gives the same text there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eval.summary import Summary


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


def ratio_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_methods_table(summary: Summary) -> str:
    """The methods table alone: method, description, accuracy, 95% interval, experts and tokens
    per answer, (when the pool declares costs) cost per answer and its ratio to the reference's,
    and (when there is a reference) accuracy over the reference's."""
    costs = summary.costs_declared
    accuracy = summary.cost_reference is not None
    rows = [
        [
            f"**{m.name}**" if not m.baseline else m.name,
            m.description,
            f"{pct(m.accuracy)} ({m.correct}/{m.n})",
            interval(m.ci95),
            f"{m.experts_per_question:.2f}",
            f"{m.tokens_in_per_question:.0f} / {m.tokens_out_per_question:.0f}",
        ]
        + ([cost_text(m.cost_per_question), ratio_text(m.cost_ratio)] if costs else [])
        + ([ratio_text(m.accuracy_ratio)] if accuracy else [])
        for m in summary.methods
    ]
    header = ["method", "description", "accuracy", "95% interval", "experts/question", "tokens/question (in / out)"]
    header += ["cost/question", "cost ratio"] if costs else []
    header += ["accuracy ratio"] if accuracy else []
    return "\n".join(_table(header, rows, [False, False] + [True] * (len(header) - 2)))


UNITS = {
    "active_params_b": "billions of active parameters per expert call (the pool's declared costs)",
    "usd_per_mtok": "US dollars: each expert's price per million tokens times the tokens it read and wrote",
}


def _reference_note(summary: Summary) -> list[str]:
    """The reference expert in words: who, how chosen, what it answered; or why there is none."""
    ref = summary.cost_reference
    if ref is None:
        why = "the run recorded no costs" if summary.cost_unit is None else "the pool declares no costs"
        return [f"Reference expert: none ({why}, and none was named with --reference), so no ratios.", ""]
    how = "the pool's costliest expert" if summary.reference_choice == "costliest" else "named with --reference"
    own = next((e for e in summary.experts if e.name == ref), None)
    if own is None:
        gave = "it gave no answer in this run, so no accuracy ratio"
    else:
        gave = f"it gave {own.answered} of the {summary.answers} answers, {pct(own.accuracy)} of them right"
    return [
        f"Reference expert: {ref}, {how}; {gave}. Accuracy ratio: a method's accuracy over the "
        "reference's, on the answers both gave.",
        "",
    ]


def _cost_note(summary: Summary) -> list[str]:
    """What the cost columns count and what the ratio is against (when the pool declares costs);
    a cascade's climbs."""
    lines = []
    if summary.costs_declared:
        unit = UNITS.get(str(summary.cost_unit), str(summary.cost_unit))
        if summary.cost_reference is None:
            against = " Cost ratio: none (no reference expert)."
        else:
            alone = cost_text(summary.reference_cost) if summary.reference_cost is not None else "not measured"
            who = "the pool's costliest expert" if summary.reference_choice == "costliest" else "the reference"
            against = f" Cost ratio: against {who} alone, {summary.cost_reference} ({alone} per answer)."
        lines += [
            f"Cost: {unit}, summed over the experts a method consulted (the aggregator's call not "
            f"counted; the oracle: every expert it looked at), mean per answer.{against}",
            "",
        ]
    climbs = [m for m in summary.methods if m.escalated is not None]
    if climbs:
        shares = ", ".join(f"{m.name} {pct(m.escalated or 0.0)}" for m in climbs)
        counted = "; its cost counts only the rungs it climbed" if summary.costs_declared else ""
        lines += [
            f"Cascades climbed past their first rung on: {shares} of answers. Eval asks every rung of a "
            "cascade's ladder and plays its escalation on those answers (the decisions the SDK's rounds "
            f"reach){counted}.",
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


def _experts_section(summary: Summary) -> list[str]:
    """Each expert's accuracy over its own answers, its 95% interval and (costs declared) its cost per answer."""
    costs = summary.costs_declared
    rows = []
    for e in summary.experts:
        failed = f" ({e.failed} failed)" if e.failed else ""
        name = f"{e.name} (reference)" if e.name == summary.cost_reference else e.name
        row = [name, f"{e.answered}{failed}", f"{pct(e.accuracy)} ({e.correct}/{e.n})", interval(e.ci95)]
        rows.append(row + ([cost_text(e.cost_per_answer)] if costs else []))
    header = ["expert", "answers", "accuracy", "95% interval"] + (["cost/answer"] if costs else [])
    return [
        "## Experts",
        "",
        *(_table(header, rows, [False] + [True] * (len(header) - 1)) if rows else ["No expert answered."]),
        "",
        "Each expert alone, over the answers it gave (questions × samples where some method asked it; "
        "a failed call is no answer), with its 95% Wilson interval.",
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
        *([f"- requests sent again after a lost engine or Ray actor: {cost.retried}"] if cost.retried else []),
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


def _skip_note(summary: Summary) -> list[str]:
    """How many aggregator calls the experts' consensus saved, per method that aggregates."""
    shares = [
        f"{m.name} {m.aggregator_skipped} of {m.aggregator_skipped + m.aggregator_called}"
        for m in summary.methods
        if m.aggregator_skipped + m.aggregator_called
    ]
    if not shares:
        return []
    return [
        "Aggregator calls skipped because the experts agreed (their answer stands): " + ", ".join(shares) + ".",
        "",
    ]


def render_markdown(summary: Summary) -> str:
    """``report.md``: title, methods, experts, samples (if several), categories, skipped baselines, then cost."""
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
        *_reference_note(summary),
        *_cost_note(summary),
        *_skip_note(summary),
    ]
    lines += _experts_section(summary)
    if summary.samples > 1:
        lines += _samples_section(summary)
    if summary.categories:
        lines += _category_section(summary)
    lines += ["## Skipped baselines", ""]
    lines += [f"- {name}: {why}" for name, why in summary.skipped.items()] or ["None."]
    lines.append("")
    lines += _cost_section(summary)
    return "\n".join(lines)
