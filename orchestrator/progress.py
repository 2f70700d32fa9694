"""Progress a person can read, on stderr (stdout stays the answer).

On a terminal a live ``rich`` display: routing, then per phase each model's load (with its
real duration) and its generations (a bar with rate and ETA). Elsewhere (a pipe, a CI log)
plain lines: one per routing, phase and model load, and for each model's generations in a
phase at most one line every ``PLAIN_INTERVAL_S`` seconds (its first and last always), with
the count done, the rate and an ETA.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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

PLAIN_INTERVAL_S = 5.0
"""In a log, the shortest time between two lines of one model's generations in one phase."""

Clock = Callable[[], float]


def plain_line(event: ProgressEvent) -> str | None:
    """The line a non-terminal log gets for an event (None: nothing worth a line). Generations
    get theirs from ``PlainLog``, which knows their rate."""
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
        case "phase_done":
            return f"{where}done: {event.done} task(s) in {event.seconds:.1f}s{failed}"
    return None


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class _Generations:
    """One model's generations in one phase, as the plain log has shown them."""

    started: float
    start_done: int = 0
    shown_at: float | None = None
    shown: tuple[int, int] | None = None  # (done, failed) of the last line
    held: tuple[ProgressEvent, float] | None = None  # the newest event not shown yet, and when it came


class PlainLog:
    """Plain progress lines for a log: every step once; each model's generations in a phase at
    most one line per ``interval`` seconds (its first and its last always), with the count,
    the rate since the model was loaded and an ETA. ``clock`` gives seconds (monotonic)."""

    def __init__(self, write: Callable[[str], None], clock: Clock = time.monotonic, interval: float = PLAIN_INTERVAL_S):
        self.write = write
        self.clock = clock
        self.interval = interval
        self._phases: dict[int | None, float] = {}
        self._models: dict[tuple[int | None, str], _Generations] = {}

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        if event.kind == "phase_start":
            self._phases[event.phase] = now
        elif event.kind == "model_loaded" and event.model:
            self._models[(event.phase, event.model)] = _Generations(started=now)
        elif event.kind == "generated" and event.model:
            self._generated(event, now)
            return
        elif event.kind == "phase_done":
            self.flush(event.phase)
        line = plain_line(event)
        if line is not None:
            self.write(line)

    def flush(self, phase: int | None = None, *, every: bool = False) -> None:
        """Show the held line of each model of ``phase`` (of every phase with ``every``)."""
        for (where, _), seen in self._models.items():
            if (every or where == phase) and seen.held is not None:
                self._show(seen, *seen.held)

    def _generated(self, event: ProgressEvent, now: float) -> None:
        key = (event.phase, event.model or "")
        seen = self._models.get(key)
        if seen is None:  # no load seen: count from the phase's start, else from this event
            phase_start = self._phases.get(event.phase)
            seen = _Generations(now, event.done) if phase_start is None else _Generations(phase_start)
            self._models[key] = seen
        last = event.done >= event.total
        if seen.shown == (event.done, event.failed):
            seen.held = None  # nothing new to say
        elif seen.shown_at is None or last or now - seen.shown_at >= self.interval:
            self._show(seen, event, now)
        else:
            seen.held = (event, now)

    def _show(self, seen: _Generations, event: ProgressEvent, now: float) -> None:
        elapsed = now - seen.started
        rate = (event.done - seen.start_done) / elapsed if elapsed > 0 else None
        if event.done >= event.total:
            timing = f"{rate:.1f}/s, took {duration(elapsed)}" if rate is not None else "done"
        elif rate:
            timing = f"{rate:.1f}/s, ETA {duration((event.total - event.done) / rate)}"
        else:
            timing = "ETA unknown"
        where = f"[phase {event.phase}] " if event.phase is not None else ""
        failed = f", {event.failed} failed" if event.failed else ""
        self.write(
            f"{where}generated {event.model} {event.done}/{event.total} ({timing}; {event.tokens} tokens{failed})"
        )
        seen.shown_at, seen.shown, seen.held = now, (event.done, event.failed), None


class LiveProgress:
    """A progress callback for the SDK (``progress=display``), used as a context manager."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        clock: Clock = time.monotonic,
        interval: float = PLAIN_INTERVAL_S,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._lock = threading.Lock()
        self._plain = PlainLog(self._write, clock, interval)
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
            return
        with self._lock:
            self._plain.flush(every=True)

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self._progress is None:
                self._plain(event)
                return
            self._show(self._progress, event)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

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
