"""Two evaluation runs compared on one method, question by question (B − A)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from common.errors import BadInput, NotFound
from eval.report import NO_CATEGORY, method_order
from eval.report_markdown import pct
from eval.results import QuestionResult, RunInfo, read_results, read_run

Z95 = 1.96


class PairedScore(BaseModel):
    """One method's answers in runs A and B on the same questions (and samples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(..., description="Answers paired: (question, sample) answered in both runs.")
    a_correct: int
    b_correct: int
    a_accuracy: float
    b_accuracy: float
    difference: float = Field(..., description="Accuracy of B minus accuracy of A.")
    ci95: tuple[float, float] = Field(..., description="95% interval of the difference (normal approximation).")
    only_a: int = Field(..., description="Answers only A got right.")
    only_b: int = Field(..., description="Answers only B got right.")


class RunLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: str
    benchmark: str
    split: str
    pool: str
    policy: str
    k: int | None
    aggregator: str
    answers: int


class Comparison(BaseModel):
    """Run B against run A for one method: overall and per category (sorted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    a: RunLabel
    b: RunLabel
    only_in_a: int = Field(..., description="Answers of A with no counterpart in B (left out).")
    only_in_b: int = Field(..., description="Answers of B with no counterpart in A (left out).")
    overall: PairedScore
    per_category: dict[str, PairedScore]


def paired_score(pairs: Sequence[tuple[bool, bool]]) -> PairedScore:
    """Score (A right, B right) pairs. The difference B − A is the mean of the per-answer
    differences d = b − a (each −1, 0 or 1); its 95% interval is the normal approximation
    mean ± 1.96 · s / √n with s the sample standard deviation of d, clipped to [−1, 1]. With
    fewer than two pairs nothing is known: the interval is [−1, 1]."""
    n = len(pairs)
    a_right = sum(a for a, _ in pairs)
    b_right = sum(b for _, b in pairs)
    diffs = [int(b) - int(a) for a, b in pairs]
    mean = sum(diffs) / n if n else 0.0
    if n > 1:
        variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
        half = Z95 * math.sqrt(variance / n)
        ci = (max(-1.0, mean - half), min(1.0, mean + half))
    else:
        ci = (-1.0, 1.0)
    return PairedScore(
        n=n,
        a_correct=a_right,
        b_correct=b_right,
        a_accuracy=a_right / n if n else 0.0,
        b_accuracy=b_right / n if n else 0.0,
        difference=mean,
        ci95=ci,
        only_a=sum(1 for a, b in pairs if a and not b),
        only_b=sum(1 for a, b in pairs if b and not a),
    )


def _load(directory: Path, which: str, method: str) -> tuple[RunInfo, dict[tuple[str, int], QuestionResult]]:
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"run {which}: {directory} does not exist or is not a folder")
    info = read_run(directory)
    results = read_results(directory)
    names = method_order(info, results)
    if method not in names:
        raise BadInput(f"method {method!r} is not in run {which} ({directory}); it has {', '.join(names) or 'none'}")
    keyed: dict[tuple[str, int], QuestionResult] = {}
    for result in results:
        key = (result.question_id, result.sample)
        if key in keyed:
            raise BadInput(f"run {which} ({directory}): question {key[0]!r} sample {key[1]} appears twice")
        if method in result.methods and result.methods[method].correct is not None:  # None: not scored
            keyed[key] = result
    return info, keyed


def run_label(directory: Path, info: RunInfo, answers: int) -> RunLabel:
    """How a comparison names a run: its folder and what was run (``answers``: those it scored)."""
    return RunLabel(
        directory=str(directory),
        benchmark=info.benchmark,
        split=info.split,
        pool=info.pool,
        policy=info.policy,
        k=info.k,
        aggregator=info.aggregator,
        answers=answers,
    )


Scored = tuple[str | None, bool]
"""One answer of a method, as a comparison reads it: the question's category (None: none) and
whether the method got it right."""


def change(a_right: bool, b_right: bool) -> str:
    """Which way one paired answer moved from A to B: gained (only B right), lost (only A
    right), both right or both wrong."""
    if a_right != b_right:
        return "gained" if b_right else "lost"
    return "both right" if a_right else "both wrong"


def compare(a_dir: Path, b_dir: Path, method: str = "ours") -> Comparison:
    """Pair the two runs' answers of ``method`` on the (question id, sample) both hold and
    compare them (``compare_scored``)."""
    a_info, a = _load(a_dir, "A", method)
    b_info, b = _load(b_dir, "B", method)
    return compare_scored(
        method,
        run_label(a_dir, a_info, len(a)),
        run_label(b_dir, b_info, len(b)),
        {key: (r.category, bool(r.methods[method].correct)) for key, r in a.items()},
        {key: (r.category, bool(r.methods[method].correct)) for key, r in b.items()},
    )


def compare_scored(
    method: str,
    a_label: RunLabel,
    b_label: RunLabel,
    a: Mapping[tuple[str, int], Scored],
    b: Mapping[tuple[str, int], Scored],
) -> Comparison:
    """Compare two runs' scored answers of ``method``, keyed by (question id, sample): the
    accuracies on the keys both hold, the paired difference B − A with its 95% interval (see
    ``paired_score``), and the answers only one run got right; overall and per category (A's
    category, or B's where A has none). Every door that compares runs (``coe report A B``, the
    viewer) pairs answers here."""
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise BadInput(
            f"runs A ({a_label.directory}) and B ({b_label.directory}) share no question answered by {method!r} "
            f"(A: {a_label.benchmark} {a_label.split}, B: {b_label.benchmark} {b_label.split})"
        )
    pairs: list[tuple[bool, bool]] = []
    by_category: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for key in shared:
        (a_category, a_right), (b_category, b_right) = a[key], b[key]
        pair = (a_right, b_right)
        pairs.append(pair)
        by_category[a_category or b_category or NO_CATEGORY].append(pair)
    return Comparison(
        method=method,
        a=a_label,
        b=b_label,
        only_in_a=len(a) - len(shared),
        only_in_b=len(b) - len(shared),
        overall=paired_score(pairs),
        per_category={c: paired_score(by_category[c]) for c in sorted(by_category)},
    )


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _run_line(which: str, label: RunLabel) -> str:
    k = f", k={label.k}" if label.k is not None else ""
    return (
        f"- {which}: `{label.directory}`: {label.benchmark} ({label.split}), pool {label.pool}, "
        f"policy {label.policy}{k}, {label.aggregator}"
    )


def render_comparison(c: Comparison) -> str:
    """The comparison as Markdown: the two runs, then one table (all, then each category)."""
    header = (
        "| | answers | A | B | B − A (points) | 95% interval | only A right | only B right |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|"
    )

    def row(name: str, s: PairedScore) -> str:
        return (
            f"| {name} | {s.n} | {pct(s.a_accuracy)} | {pct(s.b_accuracy)} | {_points(s.difference)} | "
            f"{_points(s.ci95[0])} to {_points(s.ci95[1])} | {s.only_a} | {s.only_b} |"
        )

    lines = [
        f"# {c.method}: run B against run A",
        "",
        _run_line("A", c.a),
        _run_line("B", c.b),
        "",
        f"{c.overall.n} answers (question × sample) paired; {c.only_in_a} only in A and {c.only_in_b} only in B "
        "are left out. The interval is the normal approximation on the per-answer differences.",
        "",
        header,
        row("**all**", c.overall),
        *(row(name.replace("|", "\\|"), score) for name, score in c.per_category.items()),
        "",
    ]
    return "\n".join(lines)
