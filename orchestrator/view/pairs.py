"""Two runs side by side, question by question, on one method: the comparison of ``eval.compare``
(paired difference B − A with its interval, overall and per category) and, per question both
answered, which way it moved (gained, lost, both right, both wrong) and whether the final
answers differ. Pairings are kept (a few), since the browser pages through them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.errors import BadInput
from eval.compare import Comparison, Scored, change, compare_scored, run_label
from eval.report import NO_CATEGORY
from orchestrator.view.index import PAGE_LIMIT, RunIndex
from orchestrator.view.runs import Run

KEPT = 8
"""Pairings kept in memory (the least recently used goes first)."""


@dataclass(frozen=True, slots=True)
class PairRow:
    """One (question, sample) both runs answered with the method."""

    question_id: str
    sample: int
    category: str
    a_position: int
    b_position: int
    a_final: str | None
    b_final: str | None
    a_correct: bool
    b_correct: bool
    change: str
    differ: bool


@dataclass(frozen=True)
class Pairing:
    comparison: Comparison
    rows: list[PairRow]


class PairQuery(BaseModel):
    """What the comparison's question list asks for: filters and one page."""

    model_config = ConfigDict(extra="forbid")

    a: str
    b: str
    method: str = "ours"
    change: Literal["gained", "lost", "both right", "both wrong", "changed"] | None = Field(
        None, description="changed: gained or lost."
    )
    differ: bool = Field(False, description="Only questions whose final answers differ.")
    category: str | None = None
    search: str = Field("", max_length=200)
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=PAGE_LIMIT)


def _scored(index: RunIndex, method: str) -> dict[tuple[str, int], Scored]:
    out: dict[tuple[str, int], Scored] = {}
    for row in index.rows:
        one = row.methods.get(method)
        if one is not None and one.correct is not None:  # None: not scored
            out[(row.question_id, row.sample)] = (None if row.category == NO_CATEGORY else row.category, one.correct)
    return out


def pair_runs(a: Run, b: Run, method: str) -> Pairing:
    """Pair run A's and run B's answers of ``method``; BadInput when a run lacks the method."""
    a_index, b_index = a.index(), b.index()
    for which, run, index in (("A", a, a_index), ("B", b, b_index)):
        if method not in index.methods:
            raise BadInput(
                f"method {method!r} is not in run {which} ({run.id}); it has {', '.join(index.methods)}",
                param="method",
            )
    a_scored, b_scored = _scored(a_index, method), _scored(b_index, method)
    comparison = compare_scored(
        method,
        run_label(a.directory, a.info, len(a_scored)),
        run_label(b.directory, b.info, len(b_scored)),
        a_scored,
        b_scored,
    )
    judge = a_index.judge
    rows = []
    for key in sorted(a_scored.keys() & b_scored.keys()):
        ra, rb = a_index.rows[a_index.by_key[key]], b_index.rows[b_index.by_key[key]]
        ma, mb = ra.methods[method], rb.methods[method]
        a_right, b_right = bool(ma.correct), bool(mb.correct)
        rows.append(
            PairRow(
                question_id=key[0],
                sample=key[1],
                category=ra.category if ra.category != NO_CATEGORY else rb.category,
                a_position=ra.position,
                b_position=rb.position,
                a_final=ma.final,
                b_final=mb.final,
                a_correct=a_right,
                b_correct=b_right,
                change=change(a_right, b_right),
                differ=judge.key(ma.final) != judge.key(mb.final),
            )
        )
    return Pairing(comparison, rows)


def select_pairs(pairing: Pairing, query: PairQuery) -> tuple[list[PairRow], int]:
    """(the page of paired rows that pass the query's filters, how many pass in all)."""
    if query.category is not None and query.category not in pairing.comparison.per_category:
        raise BadInput(f"category {query.category!r} is not among the paired answers' categories", param="category")
    needle = query.search.casefold()
    passing = [
        row
        for row in pairing.rows
        if (
            query.change is None
            or row.change == query.change
            or (query.change == "changed" and row.change in ("gained", "lost"))
        )
        and (not query.differ or row.differ)
        and (query.category is None or row.category == query.category)
        and (not needle or needle in row.question_id.casefold())
    ]
    return passing[query.offset : query.offset + query.limit], len(passing)


class Pairings:
    """The pairings asked for lately, by (A, B, method), each made once while A's and B's
    indexes stay current."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, str, str], tuple[RunIndex, RunIndex, Pairing]] = OrderedDict()

    def get(self, a: Run, b: Run, method: str) -> Pairing:
        key = (a.id, b.id, method)
        a_index, b_index = a.index(), b.index()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] is a_index and kept[1] is b_index:
                self._kept.move_to_end(key)
                return kept[2]
        pairing = pair_runs(a, b, method)
        with self._lock:
            self._kept[key] = (a_index, b_index, pairing)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        return pairing
