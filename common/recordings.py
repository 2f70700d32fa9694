"""Recordings: what real models answered earlier, one JSONL line (gzip or not) per (model,
question): ``model``, ``question_id``, ``text`` and optionally ``pred`` and ``correct``.

Recordings are data. The replay engine answers from them; profiles, aggregator selection and
the benchmarks read them directly. A (model, question id) never recorded raises ``ReplayMiss``.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import BadInput, NotFound, ReplayMiss

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    model: str
    question_id: str
    text: str
    pred: str | None = None
    correct: int | None = None


def _open_text(path: Path):
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gzipped else path.open(encoding="utf-8")


def iter_records(path: Path, models: Iterable[str] | None = None) -> Iterator[Record]:
    """Stream the records of ``path`` (only ``models`` if given), checking each line."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"replay file {path} does not exist")
    wanted = set(models) if models is not None else None
    try:
        yield from _records(path, wanted)
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated gzip, not text
        raise BadInput(f"{path}: cannot be read as JSONL: {type(exc).__name__}: {exc}") from exc


_MODEL = re.compile(r'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')
"""A record's model, read without parsing the line (whose other models' records are skipped)."""


def _named(line: str) -> str | None:
    found = _MODEL.search(line)
    if found is None:
        return None
    value = found.group(1)
    return json.loads(f'"{value}"') if "\\" in value else value


def _records(path: Path, wanted: set[str] | None) -> Iterator[Record]:
    with _open_text(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if wanted is not None and (named := _named(line)) is not None and named not in wanted:
                continue  # another model's record: not parsed (a malformed line still is, and fails)
            try:
                row = json.loads(line)
                model, qid, text = row["model"], row["question_id"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadInput(
                    f"{path}:{number}: not a replay record (needs JSON with model, question_id, text): {exc}"
                ) from exc
            if wanted is not None and model not in wanted:
                continue
            pred = None if row.get("pred") is None else str(row["pred"])  # a number recorded as one
            correct = row.get("correct")
            if correct is not None and correct not in (0, 1, True, False):
                raise BadInput(f"{path}:{number}: 'correct' must be 0 or 1, got {correct!r}")
            yield Record(str(model), str(qid), text or "", pred, None if correct is None else int(correct))


def require_models(path: Path, wanted: Mapping[str, str], recorded: Collection[str]) -> None:
    """NotFound naming every recorded model of ``wanted`` (expert -> recorded model) that is not
    among ``recorded`` (the models the file ``path`` holds), and the models it holds."""
    missing = {expert: model for expert, model in wanted.items() if model not in recorded}
    if missing:
        lacking = ", ".join(f"{model!r} (expert {expert})" for expert, model in missing.items())
        raise NotFound(f"replay file {path} has no records of {lacking}; it records: {', '.join(sorted(recorded))}")


class ReplayBook:
    """Recordings of one file, indexed by (model, question id), loaded per model on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._by_model: dict[str, dict[str, Record]] = {}
        self._known_models: set[str] | None = None
        self._lock = threading.Lock()

    def models(self) -> list[str]:
        """Every model the file records (reads the file once)."""
        with self._lock:
            if self._known_models is None:
                self._known_models = {record.model for record in iter_records(self.path)}
            return sorted(self._known_models)

    def load(self, models: Iterable[str]) -> None:
        """Index the records of ``models`` (those not indexed yet) in one pass over the file."""
        with self._lock:
            missing = set(models) - set(self._by_model)
            if not missing:
                return
            found: dict[str, dict[str, Record]] = {m: {} for m in missing}
            for record in iter_records(self.path, missing):
                found[record.model][record.question_id] = record
            empty = sorted(m for m, rows in found.items() if not rows)
            if empty:
                raise NotFound(f"replay file {self.path} has no records for model(s) {', '.join(empty)}")
            self._by_model.update(found)
            log.info("replay: indexed %d model(s) from %s", len(missing), self.path)

    def records(self, model: str) -> dict[str, Record]:
        self.load([model])
        return self._by_model[model]

    def get(self, model: str, question_id: str) -> Record:
        try:
            return self.records(model)[str(question_id)]
        except KeyError:
            raise ReplayMiss(
                f"no recorded answer of model {model!r} to question {question_id!r} in {self.path}"
            ) from None


_books: dict[Path, ReplayBook] = {}
_books_lock = threading.Lock()


def replay_book(path: Path) -> ReplayBook:
    """The shared ``ReplayBook`` of a file, so several experts read it once."""
    key = Path(path).resolve()
    with _books_lock:
        if key not in _books:
            _books[key] = ReplayBook(key)
        return _books[key]
