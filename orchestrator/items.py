"""Which benchmark item a question is, so that experts answering from recordings answer it.

A request names the item it asks by ``question_id`` and ``benchmark`` (``common.requests``); a
replay expert answers only items of the benchmark its recordings are of
(``ReplaySource.benchmark``): anything else is a ``ReplayMiss``. The pipeline decides each
question's item once, when it decides its route (``Asked.item``):

- a benchmark item (``eval.Question``) is itself: its id, and the benchmark whose items it asks
  (``eval.item_benchmark``: MMLU-Pro 5-shot asks MMLU-Pro's);
- a free-text question (``coe ask``, the SDK's ``answer("...")``, chat completions) put to a pool
  with replay models is the item of their benchmark whose text it is: the same words, whitespace
  aside, and the same options when it has options (or its options written into the text as
  ``eval.with_options`` writes them). Items of one text with different options are not told
  apart without the options: such a question is none of them. ``ItemIndex`` reads each
  benchmark's default split once, on first use, and the process shares what it read;
- any other question keeps its own id and no benchmark (a replay expert looks its id up).

``check_recordings`` refuses in one line, before any work, to put one benchmark's questions to a
pool whose recordings are of another (``coe eval``, ``coe profile``, ``coe calibrate``).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batching.spec import ReplaySource
from common.errors import BadInput, CoeError
from common.query import Query
from eval.benchmarks import BENCHMARKS, Question, item_benchmark, with_options
from orchestrator.pool import Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemRef:
    """The benchmark item a request asks (what a replay expert looks up)."""

    question_id: str
    benchmark: str | None = None
    """None: a question of no known benchmark, looked up by its id alone."""


def squash(text: str) -> str:
    """``text`` with every run of whitespace made one space, and none at the ends."""
    return " ".join(text.split())


_Entry = tuple[str, tuple[str, ...]]
"""(item id, its options squashed)."""

_texts: dict[tuple[str, Path], dict[str, list[_Entry]]] = {}
_texts_lock = threading.Lock()


def _read(benchmark: str, data_dir: Path) -> dict[str, list[_Entry]]:
    bench = BENCHMARKS.get(benchmark)
    if bench is None:
        log.info("free-text questions are not looked up in %s: not a built-in benchmark", benchmark)
        return {}
    try:
        items = bench.questions(data_dir)
    except CoeError as exc:
        log.warning("free-text questions are not looked up in %s: %s", benchmark, exc)
        return {}
    by_text: dict[str, list[_Entry]] = defaultdict(list)
    for item in items:
        entry = (item.id, tuple(squash(o) for o in item.options))
        by_text[squash(item.text)].append(entry)
        if item.options:
            by_text[squash(with_options(item))].append(entry)
    log.info("items: %d question texts of %s (%s split) indexed", len(items), benchmark, bench.default_split)
    return dict(by_text)


def question_texts(benchmark: str, data_dir: Path) -> Mapping[str, list[_Entry]]:
    """Squashed question text -> the items of ``benchmark``'s default split with that text; read
    once per process (empty for a benchmark that is not built in, or whose files are missing)."""
    key = (benchmark, Path(data_dir).resolve())
    with _texts_lock:
        if key not in _texts:
            _texts[key] = _read(benchmark, key[1])
        return _texts[key]


class ItemIndex:
    """Finds the item of ``benchmarks`` that a free-text question is; reads nothing until asked."""

    def __init__(self, benchmarks: Iterable[str], data_dir: Path) -> None:
        self.benchmarks = tuple(sorted(set(benchmarks)))
        self.data_dir = Path(data_dir)

    def find(self, query: Query) -> ItemRef | None:
        """The item whose text (and options, when ``query`` has some) are the query's; None when
        there is none, or several that differ in benchmark or options (identical items: the first)."""
        text = squash(query.text)
        options = tuple(squash(o) for o in query.options)
        found = [
            (name, qid, opts)
            for name in self.benchmarks
            for qid, opts in question_texts(name, self.data_dir).get(text, ())
            if not options or opts == options
        ]
        if not found or len({(name, opts) for name, _, opts in found}) > 1:
            return None
        name, qid, _ = found[0]
        return ItemRef(qid, name)


def recorded_benchmarks(pool: Pool) -> dict[str, str]:
    """Model name -> the benchmark its recordings answer, for the pool's replay models."""
    return {m.name: m.source.benchmark for m in pool.models if isinstance(m.source, ReplaySource)}


def item_index(pool: Pool, data_dir: Path) -> ItemIndex | None:
    """The index of the benchmarks the pool's recordings answer; None when it has no replay model."""
    benchmarks = set(recorded_benchmarks(pool).values())
    return ItemIndex(benchmarks, data_dir) if benchmarks else None


def item_of(query: Query, index: ItemIndex | None) -> ItemRef:
    """The item ``query`` asks: a benchmark item's own, else the one its text is (``index``), else
    its own id with no benchmark."""
    if isinstance(query, Question):
        return ItemRef(query.id, item_benchmark(query.benchmark))
    found = index.find(query) if index is not None else None
    return found if found is not None else ItemRef(query.id)


def check_recordings(pool: Pool, benchmark: str) -> None:
    """Refuse to put ``benchmark``'s items to a pool whose replay models recorded another benchmark
    (every one of their answers would be a replay miss)."""
    other = {name: recorded for name, recorded in recorded_benchmarks(pool).items() if recorded != benchmark}
    if not other:
        return
    kinds = ", ".join(sorted(set(other.values())))
    names = ", ".join(other) if len(other) <= 3 else f"{len(other)} replay models"
    raise BadInput(
        f"pool {pool.name!r} answers from recordings of {kinds} ({names}), which hold no answer to "
        f"{benchmark} questions: ask it {kinds} questions, or use a pool whose recordings are of {benchmark}"
    )


def check_questions(pool: Pool, questions: Iterable[Query]) -> None:
    """``check_recordings`` for the benchmark of each benchmark item among ``questions``."""
    for name in sorted({item_benchmark(q.benchmark) for q in questions if isinstance(q, Question)}):
        check_recordings(pool, name)


__all__ = [
    "ItemIndex",
    "ItemRef",
    "check_questions",
    "check_recordings",
    "item_index",
    "item_of",
    "recorded_benchmarks",
    "squash",
]
