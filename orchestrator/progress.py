"""Progress a person can read, on stderr (stdout stays the answer).

On a terminal a live ``rich`` display: routing, then per phase each model's load (with its
real duration) and its generations (a bar with rate and ETA). Elsewhere (a pipe, a CI log)
one plain line per step, with the same figures.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from batching.executor import ProgressEvent


def plain_line(event: ProgressEvent) -> str | None:
    """The line a non-terminal log gets for an event (None: nothing worth a line)."""
    where = f"[phase {event.phase}] " if event.phase is not None else ""
    model = f" {event.model}" if event.model else ""
    failed = f", {event.failed} failed" if event.failed else ""
    match event.kind:
        case "route_start":
            return f"routing {event.total} question(s)"
        case "route_done":
            return f"routed {event.done} question(s) in {event.seconds:.1f}s"
        case "phase_start":
            return f"{where}started: {event.total} task(s)"
        case "phase_skipped":
            return f"{where}skipped: every task already finished"
        case "model_loading":
            return f"{where}loading{model}"
        case "model_loaded":
            state = "could not load" if event.failed else "model loaded"
            return f"{where}{state}{model} in {event.seconds:.1f}s"
        case "generated":
            return f"{where}generated{model} {event.done}/{event.total} ({event.tokens} tokens{failed})"
        case "phase_done":
            return f"{where}done: {event.done} task(s) in {event.seconds:.1f}s{failed}"
    return None


class LiveProgress:
    """A progress callback for the SDK (``progress=display``), used as a context manager."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._lock = threading.Lock()
        self._bars: dict[tuple[int | None, str], TaskID] = {}
        self._progress: Progress | None = None
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )

    def __enter__(self) -> LiveProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self._progress is None:
                line = plain_line(event)
                if line is not None:
                    print(line, file=self.stream, flush=True)
                return
            self._show(self._progress, event)

    def _bar(self, progress: Progress, key: tuple[int | None, str], description: str, total: int) -> TaskID:
        if key not in self._bars:
            self._bars[key] = progress.add_task(description, total=max(total, 1), note="")
        return self._bars[key]

    def _show(self, progress: Progress, event: ProgressEvent) -> None:
        phase = f"phase {event.phase} " if event.phase is not None else ""
        if event.kind == "route_start":
            self._bar(progress, (None, "route"), "routing", event.total)
        elif event.kind == "route_done":
            bar = self._bar(progress, (None, "route"), "routing", event.total)
            progress.update(bar, completed=event.total, note=f"{event.seconds:.1f}s")
        elif event.kind == "phase_skipped":
            progress.console.print(f"{phase}skipped: every task already finished")
        elif event.kind == "model_loading" and event.model:
            self._bar(progress, (event.phase, f"load {event.model}"), f"{phase}load {event.model}", 1)
        elif event.kind == "model_loaded" and event.model:
            bar = self._bar(progress, (event.phase, f"load {event.model}"), f"{phase}load {event.model}", 1)
            note = "failed" if event.failed else f"{event.seconds:.1f}s"
            progress.update(bar, completed=1, note=note)
            self._bar(progress, (event.phase, event.model), f"{phase}{event.model}", event.total)
        elif event.kind == "generated" and event.model:
            bar = self._bar(progress, (event.phase, event.model), f"{phase}{event.model}", event.total)
            failed = f", {event.failed} failed" if event.failed else ""
            progress.update(bar, completed=event.done, note=f"{event.tokens} tok{failed}")
