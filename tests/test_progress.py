"""Progress in a log (stderr not a terminal): one line per step, and each model's generations in
a phase at most one line per interval, its first and last always, with count, rate and ETA.
A fake clock stands in for time: nothing sleeps."""

from __future__ import annotations

import io

from batching.executor import ProgressEvent
from orchestrator.progress import PLAIN_INTERVAL_S, LiveProgress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(events: list[tuple[float, ProgressEvent]], interval: float = 5.0) -> list[str]:
    """Feed timed events to a plain display; the lines it wrote, after it closed."""
    clock, stream = Clock(), io.StringIO()
    with LiveProgress(stream, live=False, clock=clock, interval=interval) as display:
        for at, event in events:
            clock.now = at
            display(event)
    return stream.getvalue().splitlines()


def generated(model: str, done: int, total: int, *, phase: int = 0, failed: int = 0) -> ProgressEvent:
    return ProgressEvent(
        kind="generated", phase=phase, model=model, done=done, total=total, failed=failed, tokens=10 * done
    )


def test_the_interval_is_a_few_seconds():
    assert 1.0 <= PLAIN_INTERVAL_S <= 10.0


def test_generations_are_throttled_per_model_with_rate_and_eta():
    events = [
        (0.0, ProgressEvent(kind="route_start", total=100)),
        (0.5, ProgressEvent(kind="route_done", done=100, total=100, seconds=0.5)),
        (0.5, ProgressEvent(kind="phase_start", phase=0, total=110)),
        (0.5, ProgressEvent(kind="model_loading", phase=0, model="big", total=100)),
        (0.5, ProgressEvent(kind="model_loading", phase=0, model="small", total=10)),
        (2.0, ProgressEvent(kind="model_loaded", phase=0, model="big", total=100, seconds=1.5)),
        (2.0, ProgressEvent(kind="model_loaded", phase=0, model="small", total=10, seconds=1.5)),
    ]
    # big: one generation every 0.25 s (4/s), 100 in all; small: one a second, interleaved
    events += [(2 + 0.25 * i, generated("big", i, 100)) for i in range(1, 101)]
    events += [(2.0 + i, generated("small", i, 10)) for i in range(1, 11)]
    events.sort(key=lambda pair: pair[0])
    events += [
        (27.0, generated("big", 100, 100)),  # the wave's own count after the batch: nothing new
        (27.5, ProgressEvent(kind="phase_done", phase=0, done=110, total=110, seconds=27.0)),
    ]
    lines = run(events)
    big = [line for line in lines if "generated big" in line]
    assert big == [
        "[phase 0] generated big 1/100 (4.0/s, ETA 25s; 10 tokens)",  # the first at once
        "[phase 0] generated big 21/100 (4.0/s, ETA 20s; 210 tokens)",  # then every 5 s at most
        "[phase 0] generated big 41/100 (4.0/s, ETA 15s; 410 tokens)",
        "[phase 0] generated big 61/100 (4.0/s, ETA 10s; 610 tokens)",
        "[phase 0] generated big 81/100 (4.0/s, ETA 5s; 810 tokens)",
        "[phase 0] generated big 100/100 (4.0/s, took 25s; 1000 tokens)",  # the last always, once
    ]
    small = [line for line in lines if "generated small" in line]
    assert small == [
        "[phase 0] generated small 1/10 (1.0/s, ETA 9s; 10 tokens)",
        "[phase 0] generated small 6/10 (1.0/s, ETA 4s; 60 tokens)",
        "[phase 0] generated small 10/10 (1.0/s, took 10s; 100 tokens)",
    ]
    # every other step once, in order
    assert [line for line in lines if "generated" not in line] == [
        "routing 100 question(s)",
        "routed 100 question(s) in 0.5s",
        "[phase 0] started: 110 task(s)",
        "[phase 0] loading big",
        "[phase 0] loading small",
        "[phase 0] model loaded big in 1.5s",
        "[phase 0] model loaded small in 1.5s",
        "[phase 0] done: 110 task(s) in 27.0s",
    ]
    assert lines[-1].endswith("done: 110 task(s) in 27.0s")


def test_a_held_line_is_shown_before_its_phase_ends_and_when_the_display_closes():
    events = [
        (0.0, ProgressEvent(kind="phase_start", phase=1, total=12)),
        (0.0, ProgressEvent(kind="model_loaded", phase=1, model="m", total=12, seconds=0.0)),
        (1.0, generated("m", 1, 12, phase=1)),
        (2.0, generated("m", 5, 12, phase=1)),  # within the interval: held
        (3.0, generated("m", 10, 12, phase=1, failed=2)),  # held; the two failed never arrive
        (4.0, ProgressEvent(kind="phase_done", phase=1, done=12, total=12, failed=2, seconds=4.0)),
        (4.0, ProgressEvent(kind="phase_start", phase=2, total=4)),
        (4.0, generated("m", 1, 4, phase=2)),  # no load seen (a warm engine): timed from the phase's start
        (4.5, generated("m", 2, 4, phase=2)),  # held until the display closes
    ]
    assert run(events) == [
        "[phase 1] started: 12 task(s)",
        "[phase 1] model loaded m in 0.0s",
        "[phase 1] generated m 1/12 (1.0/s, ETA 11s; 10 tokens)",
        "[phase 1] generated m 10/12 (3.3/s, ETA 1s; 100 tokens, 2 failed)",
        "[phase 1] done: 12 task(s) in 4.0s, 2 failed",
        "[phase 2] started: 4 task(s)",
        "[phase 2] generated m 1/4 (ETA unknown; 10 tokens)",
        "[phase 2] generated m 2/4 (4.0/s, ETA 0s; 20 tokens)",
    ]


def test_durations():
    assert [duration(s) for s in (0, 4.6, 65, 3725, -1)] == ["0s", "5s", "1m05s", "1h02m", "0s"]
