"""The executor's state of one run (shared by its device threads under one lock), and the
small helpers around it."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from batching.deltas import DeltaRelay
from batching.results import RunMetrics
from common.errors import CoeError
from common.requests import Generation
from common.tasks import Composed, Task

__all__ = ["RunState", "StoreFailed", "union"]


class StoreFailed(Exception):
    """The run store could not keep a finished generation: the run stops with ``error``, rather
    than the engine being blamed and its requests retried."""

    def __init__(self, error: CoeError) -> None:
        super().__init__(str(error))
        self.error = error


class RunState:
    """Mutable state of one run, shared by device threads under one lock."""

    def __init__(self, run_id: str, tasks: Mapping[str, Task], relay: DeltaRelay | None = None) -> None:
        self.run_id = run_id
        self.tasks = tasks
        self.relay = relay
        self.lock = threading.Lock()
        self.results: dict[str, Generation] = {}
        self.failed: dict[str, str] = {}
        self.composed: dict[str, Composed] = {}
        self.stored: set[str] = set()  # tasks checkpointed as their generation arrived
        self.looked: set[str] = set()  # tasks already looked up in the stores (each is looked up once)
        self.cached: set[str] = set()  # tasks answered from the generation cache
        # (phase, model) -> (arrived, total, tokens): a model's replicas on other devices count apart
        self.arrived: dict[tuple[int | None, str], tuple[int, int, int]] = {}
        self.phase_of: dict[str, int] = {}
        self.metrics = RunMetrics()
        self.intervals: list[tuple[float, float]] = []
        self.done: dict[int, threading.Event] = {}
        self.abort: BaseException | None = None

    def resolved(self, task_id: str) -> bool:
        return task_id in self.results

    def record(self, task_id: str, generation: Generation) -> None:
        self.results[task_id] = generation
        if not generation.ok:
            self.failed[task_id] = generation.error or "failed"


def union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total
