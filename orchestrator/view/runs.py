"""The runs a viewer shows (``Catalogue``): found in the folders the user gave, each a run folder
(``run.json`` and ``results.jsonl``) or a folder of run folders. A run's question index and its
summary are made once, on first use (or ahead, by ``warm``), and made again only when its
``results.jsonl`` is rewritten. Nothing is written into a run folder: a missing or stale
``report.json`` is rebuilt in memory."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from common.errors import BadInput, NotFound
from eval.report import REPORT_JSON, summarise
from eval.results import RESULTS_FILE, RUN_FILE, RunInfo, read_results, read_run
from eval.summary import Summary
from orchestrator.view.index import RunIndex, file_signature

log = logging.getLogger(__name__)

SummarySource = Literal["report.json", "rebuilt"]


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a finished evaluation run (``run.json`` and ``results.jsonl``)."""
    return (folder / RUN_FILE).is_file() and (folder / RESULTS_FILE).is_file()


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """The run folders named by ``paths`` (each a run folder, or a folder whose sub-folders are
    runs), in the order given, sub-folders sorted, each once. A path that names no run is one
    error naming it."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise NotFound(f"{path} does not exist")
        if not path.is_dir():
            raise BadInput(f"{path} is not a folder (give an evaluation run folder, or a folder of them)")
        if (path / RUN_FILE).is_file():
            if not (path / RESULTS_FILE).is_file():
                raise NotFound(f"{path} has {RUN_FILE} but no {RESULTS_FILE} (a run that has not finished?)")
            found.append(path)
            continue
        inside = sorted(child for child in path.iterdir() if child.is_dir() and is_run(child))
        if not inside:
            raise NotFound(
                f"no evaluation runs in {path} (a run folder holds {RUN_FILE} and {RESULTS_FILE}; coe eval makes one)"
            )
        found += inside
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


class Run:
    """One run folder: its ``run.json`` (read when the catalogue opens), and on demand its index
    and summary."""

    def __init__(self, run_id: str, directory: Path, info: RunInfo) -> None:
        self.id = run_id
        self.directory = directory
        self.info = info
        self._index_lock = threading.Lock()  # apart: the summary is served while the index is built
        self._summary_lock = threading.Lock()
        self._index: RunIndex | None = None
        self._summary: tuple[tuple[int, int], Summary, SummarySource] | None = None

    def index(self) -> RunIndex:
        """The question index, built on first use and again when ``results.jsonl`` changed."""
        with self._index_lock:
            if self._index is None or not self._index.current():
                self._index = RunIndex.build(self.directory, self.info)
                log.info("indexed %s: %d answers in %.2fs", self.directory, len(self._index.rows), self._index.seconds)
            return self._index

    def summary(self) -> tuple[Summary, SummarySource]:
        """The run's report as numbers: ``report.json`` when it is at least as new as the results
        and readable, else rebuilt from ``run.json`` and ``results.jsonl`` (in memory only)."""
        results = self.directory / RESULTS_FILE
        with self._summary_lock:
            signature = file_signature(results)
            if self._summary is None or self._summary[0] != signature:
                summary, source = self._read_report(signature)
                self._summary = (signature, summary, source)
            return self._summary[1], self._summary[2]

    def _read_report(self, signature: tuple[int, int]) -> tuple[Summary, SummarySource]:
        report = self.directory / REPORT_JSON
        if report.is_file() and report.stat().st_mtime_ns >= signature[1]:
            try:
                return Summary.model_validate_json(report.read_bytes()), "report.json"
            except (ValidationError, ValueError) as exc:
                log.info("%s cannot be read (%s): rebuilding the summary", report, str(exc).splitlines()[0])
        return summarise(read_run(self.directory), read_results(self.directory)), "rebuilt"

    def warm(self) -> None:
        """Build the index in a background thread (the first request then finds it ready)."""

        def build() -> None:
            try:
                self.index()
            except Exception as exc:  # reported again, to the browser, by the request that needs it
                log.warning("cannot index %s: %s", self.directory, exc)

        threading.Thread(target=build, name=f"index-{self.id}", daemon=True).start()

    def headline(self) -> dict[str, Any]:
        """What the list of runs shows of this run, without reading its results."""
        info = self.info
        return {
            "id": self.id,
            "directory": str(self.directory),
            "benchmark": info.benchmark,
            "split": info.split,
            "pool": info.pool,
            "policy": info.policy,
            "k": info.k,
            "aggregator": info.aggregator,
            "samples": info.samples,
            "questions": info.questions,
            "methods": [m.name for m in info.methods],
            "finished": info.finished,
        }


class Catalogue:
    """The runs being viewed, by id (the folder's name; ``-2``, ``-3`` added to repeats)."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = {run.id: run for run in runs}

    @classmethod
    def open(cls, paths: Sequence[Path]) -> Catalogue:
        """Find the runs under ``paths`` and read each one's ``run.json`` (a malformed one is one
        error naming it)."""
        runs: list[Run] = []
        taken: set[str] = set()
        for directory in find_runs(paths):
            name = directory.resolve().name or "run"
            run_id, repeat = name, 1
            while run_id in taken:
                repeat += 1
                run_id = f"{name}-{repeat}"
            taken.add(run_id)
            runs.append(Run(run_id, directory, read_run(directory)))
        return cls(runs)

    def run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id!r} here; the runs are {', '.join(self.runs) or 'none'}", param="run")
        return self.runs[run_id]
