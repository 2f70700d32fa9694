"""Deltas from engines to the executor's listener, by task id, each task's text streamed once.

The executor may send a request to an engine more than once: after the engine died mid-batch
(reloaded, the batch sent again) or while halving a failing batch. Each attempt streams its
text from the start; the relay forwards only what goes beyond the text that task already
streamed, so what the listener received for a task is always one text growing. If an attempt
departs from what was streamed (sampling that is not seeded), the rest of that task's deltas
are dropped: its final generation is the record. The listener is told deltas, not asked: an
exception it raises is logged and ends that task's stream, never a batch other tasks share.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from batching.engines.base import DeltaCallback

__all__ = ["DeltaListener", "DeltaRelay"]

log = logging.getLogger(__name__)

DeltaListener = Callable[[str, str], None]
"""Called with (task id, text generated since that task's last delta), from the thread running
the task's batch. Joined, a task's deltas are its final text once it succeeded (unless a retry
departed from what was streamed); a task that fails after streaming some text ends failed."""


class DeltaRelay:
    """One run's streams: what each task has streamed so far."""

    def __init__(self, listener: DeltaListener) -> None:
        self._listener = listener
        self._lock = threading.Lock()
        self._sent: dict[str, str] = {}  # task id -> the text forwarded so far
        self._dropped: set[str] = set()

    def attempt(self, task_ids: Sequence[str]) -> DeltaCallback:
        """The engine's ``on_delta`` for one ``generate`` call on these tasks (in batch order)."""
        texts = [""] * len(task_ids)  # what this attempt has generated, per request

        def on_delta(index: int, text: str) -> None:
            before = texts[index]
            texts[index] = before + text
            self._forward(task_ids[index], before, text)

        return on_delta

    def _forward(self, task_id: str, before: str, text: str) -> None:
        with self._lock:
            if task_id in self._dropped:
                return
            sent = self._sent.get(task_id, "")
            if len(before) == len(sent):  # this attempt is the one streamed (or has caught up with it)
                new = text
            else:  # a retry, still going over what an earlier attempt streamed
                full = before + text
                if not (full.startswith(sent) or sent.startswith(full)):
                    self._dropped.add(task_id)
                    log.warning("task %s: a retry generated another text; the rest of its stream is dropped", task_id)
                    return
                new = full[len(sent) :]
            if not new:
                return
            self._sent[task_id] = sent + new
        try:
            self._listener(task_id, new)
        except Exception:
            with self._lock:
                self._dropped.add(task_id)
            log.warning("task %s: the delta listener failed; the rest of its stream is dropped", task_id, exc_info=True)
