"""One run's questions in memory, for the question browser: ``results.jsonl`` is read once, each
line kept as a small summary (its category, gold answer and, per method, the final answer,
whether it was right, the flags the browser filters on, tokens, seconds and cost) with where the
line starts, so a question's full record (every expert's text) is read from disk on demand.

Filtering and paging happen here, on the server: the browser is sent one page of rows at a time,
never the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.answers import AnswerKind, Judge
from common.errors import BadInput, Conflict, NotFound
from eval.report import category_of
from eval.results import RESULTS_FILE, MethodResult, QuestionResult, RunInfo

PAGE_LIMIT = 500
"""The most rows one page may hold."""


def run_judge(info: RunInfo) -> Judge:
    """The judge of the run's answer kind (the one rule for whether two answers are the same)."""
    try:
        kind = AnswerKind(info.answer_kind)
    except ValueError:
        kind = AnswerKind.TEXT
    return Judge(kind=kind)


def voters(method: MethodResult) -> tuple[str, ...]:
    """The experts whose answers a method combined: a cascade's voters, else every one consulted."""
    return method.voters if method.voters is not None else method.experts


def expert_keys(result: QuestionResult, judge: Judge) -> dict[str, str | None]:
    """Each expert's answer as the judge keys it (answers that are the same share one key);
    None for a blank, unreadable or failed answer (it abstains)."""
    rows = [e for e in result.experts if e.error is None]
    keys = judge.keys([e.answer for e in rows])
    return {e.expert: key for e, key in zip(rows, keys, strict=True)}


@dataclass(frozen=True, slots=True)
class MethodRow:
    """What one method did on one question, as the browser lists and filters it."""

    final: str | None
    correct: bool | None
    experts: int
    disagree: bool
    escalated: bool
    skipped: bool
    tokens: int
    seconds: float
    cost: float


@dataclass(frozen=True, slots=True)
class QuestionRow:
    """One line of ``results.jsonl``: ``position`` is its place among the run's answers."""

    position: int
    offset: int
    length: int
    question_id: str
    sample: int
    category: str
    gold: str | None
    experts: int
    methods: dict[str, MethodRow]


def method_row(result: QuestionResult, method: MethodResult, keys: dict[str, str | None]) -> MethodRow:
    answers = {keys[name] for name in voters(method) if keys.get(name) is not None}
    return MethodRow(
        final=method.final,
        correct=method.correct,
        experts=len(method.experts),
        disagree=len(answers) > 1,
        escalated=any(step.escalate for step in method.escalations),
        skipped=method.skipped is not None,
        tokens=method.tokens_in + method.tokens_out,
        seconds=method.seconds,
        cost=method.cost,
    )


class Query(BaseModel):
    """What the question browser asks for: one method's view of the questions, filtered, one page."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = Field(None, description="The method the outcome and flags are of (default: the first).")
    category: str | None = None
    outcome: Literal["right", "wrong", "unscored"] | None = None
    disagree: bool = Field(False, description="Only questions where the method's experts gave different answers.")
    escalated: bool = Field(False, description="Only questions where a cascade climbed past its first rung.")
    skipped: bool = Field(False, description="Only questions where the aggregator was not called (consensus).")
    search: str = Field("", max_length=200, description="Question ids containing this text.")
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=PAGE_LIMIT)


class RunIndex:
    """The index of one run folder's ``results.jsonl`` (``build``)."""

    def __init__(
        self,
        path: Path,
        rows: list[QuestionRow],
        methods: list[str],
        judge: Judge,
        signature: tuple[int, int],
        seconds: float,
    ) -> None:
        self.path = path
        self.rows = rows
        self.methods = methods
        self.judge = judge
        self.signature = signature
        self.seconds = seconds
        """How long building the index took."""
        self.categories = sorted({r.category for r in rows})
        self.by_key = {(r.question_id, r.sample): r.position for r in rows}

    @classmethod
    def build(cls, directory: Path, info: RunInfo) -> RunIndex:
        """Read ``directory/results.jsonl`` once; one row per line, methods in run.json's order."""
        import time

        started = time.perf_counter()
        path = Path(directory) / RESULTS_FILE
        if not path.is_file():
            raise NotFound(f"{path} does not exist (not an evaluation output folder?)")
        judge = run_judge(info)
        signature = file_signature(path)
        rows: list[QuestionRow] = []
        seen: set[str] = set()
        seen_keys: set[tuple[str, int]] = set()
        for number, offset, line in _lines(path):
            result = _parse(line, f"{path}:{number}")
            key = (result.question_id, result.sample)
            if key in seen_keys:
                raise BadInput(f"{path}:{number}: question {key[0]!r} sample {key[1]} appears twice")
            seen_keys.add(key)
            keys = expert_keys(result, judge)
            seen.update(result.methods)
            rows.append(
                QuestionRow(
                    position=len(rows),
                    offset=offset,
                    length=len(line),
                    question_id=result.question_id,
                    sample=result.sample,
                    category=category_of(result),
                    gold=result.gold,
                    experts=len(result.experts),
                    methods={name: method_row(result, m, keys) for name, m in result.methods.items()},
                )
            )
        named = [m.name for m in info.methods]
        methods = [m for m in named if m in seen] + sorted(seen - set(named))
        return cls(path, rows, methods, judge, signature, time.perf_counter() - started)

    @cached_property
    def totals(self) -> dict[tuple[str, str], tuple[int, int, float]]:
        """Per (category, method): the answers, the experts they consulted and their cost, summed
        (once per index; two threads asking at once may both sum, to the same figures)."""
        sums: dict[tuple[str, str], tuple[int, int, float]] = {}
        for row in self.rows:
            for name, m in row.methods.items():
                n, experts, cost = sums.get((row.category, name), (0, 0, 0.0))
                sums[(row.category, name)] = (n + 1, experts + m.experts, cost + m.cost)
        return sums

    def current(self) -> bool:
        """Whether ``results.jsonl`` is still the file this index was built from."""
        try:
            return file_signature(self.path) == self.signature
        except OSError:
            return False

    def method(self, name: str | None) -> str:
        """The method named (default: the run's first); BadInput naming the run's methods if unknown."""
        if name is None:
            if not self.methods:
                raise NotFound(f"{self.path} holds no method's answers")
            return self.methods[0]
        if name not in self.methods:
            raise BadInput(f"method {name!r} is not in this run; it has {', '.join(self.methods)}", param="method")
        return name

    def select(self, query: Query) -> tuple[str, list[QuestionRow], int]:
        """(the method, the page of rows that pass the query's filters, how many pass in all)."""
        method = self.method(query.method)
        if query.category is not None and query.category not in self.categories:
            raise BadInput(
                f"category {query.category!r} is not in this run; it has {', '.join(self.categories)}",
                param="category",
            )
        passing = [row for row in self.rows if _passes(row, method, query)]
        return method, passing[query.offset : query.offset + query.limit], len(passing)

    def record(self, position: int) -> QuestionResult:
        """The full record of the row at ``position``, read from disk at its offset."""
        if not 0 <= position < len(self.rows):
            raise NotFound(f"this run has no question at position {position} (it has {len(self.rows)})")
        row = self.rows[position]
        if not self.current():
            raise Conflict(f"{self.path} changed since it was read: reload the page")
        with self.path.open("rb") as lines:
            lines.seek(row.offset)
            line = lines.read(row.length)
        result = _parse(line, f"{self.path} (byte {row.offset})")
        if (result.question_id, result.sample) != (row.question_id, row.sample):
            raise Conflict(f"{self.path} changed since it was read: reload the page")
        return result


def _passes(row: QuestionRow, method: str, query: Query) -> bool:
    one = row.methods.get(method)
    if one is None:
        return False
    if query.category is not None and row.category != query.category:
        return False
    if query.outcome is not None:
        outcome = "unscored" if one.correct is None else ("right" if one.correct else "wrong")
        if outcome != query.outcome:
            return False
    if (query.disagree and not one.disagree) or (query.escalated and not one.escalated):
        return False
    if query.skipped and not one.skipped:
        return False
    return not query.search or query.search.casefold() in row.question_id.casefold()


def file_signature(path: Path) -> tuple[int, int]:
    """(size, modification time in ns): what tells a rewritten file from the one indexed."""
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of every non-blank line."""
    offset = 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, offset, line
            offset += len(line)


def _parse(line: bytes, where: str) -> QuestionResult:
    try:
        return QuestionResult.model_validate_json(line)
    except (ValidationError, ValueError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
        problem = ".".join(str(p) for p in detail["loc"]) + ": " + detail["msg"] if detail else str(exc)
        raise BadInput(f"{where}: not a question result: {problem}") from exc
