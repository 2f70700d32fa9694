"""The report's figures, drawn from a ``Summary`` with matplotlib (Agg, imported when drawn).

- ``frontier.png``: accuracy (95% interval bars) against experts consulted per answer, one
  labelled point per method; the dashed line joins the methods no other beats at equal or
  lower cost (the cost frontier; the oracle, a ceiling, is left off it).
- ``cost.png`` (pools that declare costs, more than one method): the same against the declared
  cost per answer (active parameters or dollars; ``eval.report_markdown.UNITS``).
- ``usage.png``: for ``ours``, the share of each category's answers where each expert was
  consulted (category × expert heat map).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError

if TYPE_CHECKING:
    from eval.summary import MethodSummary, Summary

FRONTIER_PNG = "frontier.png"
USAGE_PNG = "usage.png"
COST_PNG = "cost.png"
DPI = 150


def cost_frontier(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """The names of the (name, cost, accuracy) points that no other point beats: none cheaper or
    as cheap with higher accuracy. Ordered by cost; ties in both keep the first name."""
    front: list[str] = []
    best = float("-inf")
    for name, _, accuracy in sorted(points, key=lambda p: (p[1], -p[2])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    """Save a figure atomically (a temporary file, then renamed); disk errors name the file."""
    temp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp.png")
    try:
        figure.savefig(temp, dpi=DPI, bbox_inches="tight")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot be written: {exc.strerror or exc}") from exc
    return path


def columns(xs: Sequence[float], near: float) -> list[list[int]]:
    """Indices of ``xs`` grouped into columns: sorted by x, a new column starts when x is more
    than ``near`` past the column's first point. Within a column, indices keep their order."""
    groups: list[list[int]] = []
    start = float("-inf")
    for index in sorted(range(len(xs)), key=lambda i: (xs[i], i)):
        if xs[index] - start > near:
            groups.append([])
            start = xs[index]
        groups[-1].append(index)
    return [sorted(group) for group in groups]


def label_heights(ys: Sequence[float], gap: float) -> list[float]:
    """Heights for the labels of one column of points: each at its point unless that is less
    than ``gap`` below the label above it (labels never overprint; order by height is kept)."""
    heights = [0.0] * len(ys)
    above = float("inf")
    for index in sorted(range(len(ys)), key=lambda i: (-ys[i], i)):
        heights[index] = min(ys[index], above - gap)
        above = heights[index]
    return heights


def plot_frontier(summary: Summary, path: Path) -> Path:
    """Accuracy against experts per answer, one labelled point per method, interval bars.
    Methods at nearly the same cost are drawn side by side and their labels spread apart."""
    methods = [m for m in summary.methods if m.n]
    return _accuracy_against(
        summary,
        methods,
        [m.experts_per_question for m in methods],
        "experts consulted per answer (mean)",
        f"{summary.benchmark} ({summary.split}), pool {summary.pool}: accuracy against cost",
        path,
    )


COST_LABELS = {
    "active_params_b": "active parameters consulted per answer (billions, mean)",
    "usd_per_mtok": "US dollars per answer (mean)",
}


def plot_cost(summary: Summary, path: Path) -> Path | None:
    """Accuracy against the declared cost per answer; None when the pool declares no costs (or
    the run recorded none) or fewer than two methods have both."""
    methods = [m for m in summary.methods if m.n and m.cost_per_question is not None]
    if not summary.costs_declared or len(methods) < 2:
        return None
    reference = f", reference {summary.cost_reference}" if summary.cost_reference else ""
    return _accuracy_against(
        summary,
        methods,
        [m.cost_per_question or 0.0 for m in methods],
        COST_LABELS.get(str(summary.cost_unit), str(summary.cost_unit)),
        f"{summary.benchmark} ({summary.split}), pool {summary.pool}: accuracy against declared cost{reference}",
        path,
        labels_right=True,
    )


def _accuracy_against(
    summary: Summary,
    methods: Sequence[MethodSummary],
    xs: Sequence[float],
    xlabel: str,
    title: str,
    path: Path,
    *,
    labels_right: bool = False,
) -> Path:
    """One labelled point per method at (``xs``, accuracy) with its interval, and the frontier.
    ``labels_right``: every label in one stack right of the points (for costs spread unevenly,
    where labels beside each column would run into the next one)."""
    plt = _pyplot()
    xs = list(xs)
    ys = [100 * m.accuracy for m in methods]
    span = max(xs, default=1.0) or 1.0
    lows = [100 * m.ci95[0] for m in methods]
    highs = [100 * m.ci95[1] for m in methods]
    bottom, top = max(0.0, min(lows, default=0.0) - 8), min(100.0, max(highs, default=100.0) + 5)
    gap = (top - bottom) / 22  # about one line of 9-point text on this figure
    figure, axes = plt.subplots(figsize=(8.0, 5.5))
    try:
        lowest = bottom
        stacked = label_heights(ys, gap) if labels_right else []
        for column in columns(xs, near=0.04 * span):
            heights = [stacked[i] for i in column] if labels_right else label_heights([ys[i] for i in column], gap)
            lowest = min(lowest, min(heights) - gap)
            for rank, (index, height) in enumerate(zip(column, heights)):
                m = methods[index]
                x = xs[index] + (rank - (len(column) - 1) / 2) * 0.012 * span
                y = ys[index]
                colour = "tab:red" if not m.baseline else ("tab:gray" if m.aggregation == "oracle" else "tab:blue")
                axes.errorbar(
                    [x],
                    [y],
                    yerr=[[max(0.0, y - lows[index])], [max(0.0, highs[index] - y)]],  # rounding: never below 0
                    fmt="o",
                    color=colour,
                    ecolor=colour,
                    capsize=3,
                    markersize=6,
                    alpha=0.9,
                )
                label_x = (
                    1.06 * span
                    if labels_right
                    else max(xs[i] for i in column) + (len(column) / 2 + 1) * 0.012 * span + 0.03 * span
                )
                axes.annotate(
                    f"{m.name} (ceiling)" if m.aggregation == "oracle" else m.name,
                    (x, y),
                    xytext=(label_x, height),
                    textcoords="data",
                    va="center",
                    fontsize=9,
                    fontweight="bold" if not m.baseline else "normal",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.6},
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                    zorder=5,
                )
        # the oracle knows the gold answer: a ceiling, not a method one could run, so not on the frontier
        runnable = [m for m in methods if m.aggregation != "oracle"]
        x_of = {m.name: x for m, x in zip(methods, xs, strict=True)}
        front = cost_frontier([(m.name, x_of[m.name], m.accuracy) for m in runnable])
        by_name = {m.name: m for m in methods}
        if len(front) > 1:
            fx = [x_of[n] for n in front]
            fy = [100 * by_name[n].accuracy for n in front]
            axes.plot(fx, fy, linestyle="--", color="tab:green", linewidth=1, label="cost frontier", zorder=0)
            axes.legend(loc="lower right", fontsize=9)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("accuracy (%) with 95% interval")
        axes.set_title(title)
        axes.set_ylim(max(-5.0, lowest), top)
        axes.set_xlim(left=0, right=span * 1.3 + 0.5)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        return _save(figure, path)
    finally:
        plt.close(figure)


def plot_usage(summary: Summary, path: Path) -> Path | None:
    """Heat map of expert usage per category for ``summary.usage_method``; None when there is none."""
    if not summary.usage or summary.usage_method is None:
        return None
    plt = _pyplot()
    categories = list(summary.usage)
    experts = list(next(iter(summary.usage.values())))
    grid = [[summary.usage[c][e] for e in experts] for c in categories]
    width = max(6.0, 0.7 * len(experts) + 3.0)
    height = max(3.0, 0.4 * len(categories) + 2.0)
    figure, axes = plt.subplots(figsize=(width, height))
    try:
        image = axes.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(len(experts)), labels=experts, rotation=45, ha="right", fontsize=9)
        axes.set_yticks(range(len(categories)), labels=categories, fontsize=9)
        if len(experts) * len(categories) <= 400:
            for row, values in enumerate(grid):
                for column, share in enumerate(values):
                    axes.text(
                        column,
                        row,
                        f"{100 * share:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if share > 0.6 else "white",
                    )
        bar = figure.colorbar(image, ax=axes)
        bar.set_label("share of the category's answers")
        axes.set_xlabel("expert")
        axes.set_ylabel("category")
        axes.set_title(f"Experts consulted by {summary.usage_method}, per category (%)")
        figure.tight_layout()
        return _save(figure, path)
    finally:
        plt.close(figure)


def write_plots(summary: Summary, directory: Path) -> list[Path]:
    """Draw ``frontier.png``, ``cost.png`` (costs declared, several methods) and (when the run
    has ``ours``) ``usage.png`` into ``directory``."""
    written = [plot_frontier(summary, Path(directory) / FRONTIER_PNG)]
    cost = plot_cost(summary, Path(directory) / COST_PNG)
    written += [cost] if cost else []
    usage = plot_usage(summary, Path(directory) / USAGE_PNG)
    return written + ([usage] if usage else [])
