"""What the run page shows above its question browser, as JSON: how the run was made, its summary
(accuracy with intervals, cost, per method, per category and per expert), the methods no other
beats at equal or lower cost, and what each category cost each method."""

from __future__ import annotations

from typing import Any

from aggregators import wilson_interval
from eval.plots import cost_frontier
from eval.summary import Summary
from orchestrator.view.index import RunIndex
from orchestrator.view.runs import Run


def frontier(summary: Summary, axis: str) -> list[str]:
    """The methods on the cost frontier against ``axis`` (``experts``: experts consulted per
    answer; ``cost``: the declared cost), the oracle (a ceiling, not a method) left off, as the
    report's figures draw it."""
    points = []
    for m in summary.methods:
        x = m.experts_per_question if axis == "experts" else m.cost_per_question
        if m.n and x is not None and m.aggregation != "oracle":
            points.append((m.name, x, m.accuracy))
    return cost_frontier(points)


def run_overview(run: Run) -> dict[str, Any]:
    """The run page's header, tables and chart."""
    summary, source = run.summary()
    info = run.info
    return {
        **run.headline(),
        "answer_kind": info.answer_kind,
        "started": info.started,
        "command": info.command,
        "summary_source": source,
        "summary": summary.model_dump(mode="json"),
        "costs_declared": summary.costs_declared,
        "frontier": {
            "experts": frontier(summary, "experts"),
            "cost": frontier(summary, "cost") if summary.costs_declared else [],
        },
        "category_intervals": {
            m.name: {c: wilson_interval(s.correct, s.n) for c, s in m.per_category.items()} for m in summary.methods
        },
    }


def category_costs(index: RunIndex, costs_declared: bool) -> dict[str, Any]:
    """Per category, per method: answers, mean experts consulted and mean cost per answer (None
    where the pool declares no costs), from the question index."""
    table: dict[str, dict[str, dict[str, float | None]]] = {c: {} for c in index.categories}
    for (category, name), (n, experts, cost) in index.totals.items():
        table[category][name] = {
            "answers": n,
            "experts": experts / n,
            "cost": cost / n if costs_declared else None,
        }
    return {"categories": index.categories, "methods": index.methods, "table": table}
