"""The online form of the batch plan: requests wait in one queue and run in batches.

A request is a ``Ticket``. One dispatcher thread owns the engines. When it is free it takes the
oldest waiting ticket and, with ``grouping``, every other waiting ticket asked the same way
(policy, k, aggregation, max tokens), up to ``max_batch``, and runs them as one batch through
the batch planner: each expert's requests of the batch run together, one load per model
(AABBCC), instead of one question after another (ABCABC, what ``grouping=False`` does). Batches
are taken oldest first, so no request starves: a request waits at most for the batch in flight
and for the batches of older requests. Before a batch starts, the dispatcher waits up to
``gather_s`` for requests that arrive together to join it.

Identical requests in one batch are answered once. A cancelled ticket (its client went away)
leaves the queue, or, inside a running batch, its tasks are skipped before they reach an engine.

Admission: at most ``max_queue`` tickets wait; a request that would go over it is refused at once
(``Overloaded``, with the seconds the queue needs to drain as ``retry_after``). A ticket still
waiting ``queue_timeout_s`` after it arrived is failed with ``Overloaded`` and never run: a
second thread watches the deadlines, so a waiting request is answered on time even while a long
batch holds the dispatcher. Each refusal is reported to ``on_refuse`` with its reason:
``queue_full`` once per refused request, ``deadline`` once per late ticket.

``prepare`` (the service's warm-up) runs in the dispatcher thread before the first batch, so the
engines have one owner from the start; requests that arrive meanwhile wait in the queue.
``after_batch`` runs once each batch's tickets are settled, and ``on_idle`` once no request has
come for ``idle_s`` after a batch (the service gives freed memory back in both).

Traces (``common.tracing``): a batch is one ``coe.batch`` span, a child of its oldest ticket's
request and linked to the others' (each ticket's own trace: ``orchestrator.service.tickets``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from batching.results import ProgressEvent
from common import tracing
from common.errors import CoeError, Overloaded, TooLarge, Unavailable
from common.query import Query
from common.tasks import Task
from orchestrator.pipeline.task_ids import is_aggregate, question_of
from orchestrator.service.tickets import Asking, BatchHooks, RunBatch, Ticket, begin, distinct, settle, tell

log = logging.getLogger(__name__)


class Dispatcher:
    """A queue of tickets and the thread that runs them in batches (see the module's docstring)."""

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        grouping: bool = True,
        max_batch: int = 256,
        gather_s: float = 0.02,
        max_queue: int | None = None,
        queue_timeout_s: float | None = None,
        on_queue: Callable[[int], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        on_refuse: Callable[[str], None] | None = None,
        prepare: Callable[[], None] | None = None,
        after_batch: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        idle_s: float = 0.25,
    ) -> None:
        self._run_batch = run_batch
        self.grouping = grouping
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._on_queue = on_queue
        self._on_wait = on_wait
        self._on_refuse = on_refuse
        self._prepare = prepare
        self._after_batch = after_batch
        self._on_idle = on_idle
        self.idle_s = idle_s
        self._idle_due = False  # a batch ran since the dispatcher was last idle
        self._waiting: list[Ticket] = []  # in arrival order
        self._running: dict[str, list[Ticket]] = {}  # query id -> tickets of the batch in flight
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._rate = 0.0  # tickets answered per second of batch, smoothed (0: not measured yet)
        self.prepared = threading.Event()
        """Set once ``prepare`` has run (at once when there is none)."""
        self.prepare_error: str | None = None
        """Why ``prepare`` failed, if it did (the dispatcher serves regardless)."""
        self.max_wait_s = 0.0
        """The longest a ticket has waited for its batch to start."""

    # -- the caller's side ----------------------------------------------------------------------

    def submit(
        self,
        query: Query,
        asking: Asking,
        on_delta: Callable[[str], None] | None = None,
        on_step: Callable[[ProgressEvent], None] | None = None,
    ) -> Ticket:
        return self.submit_all([query], asking, on_delta, on_step)[0]

    def submit_all(
        self,
        queries: Sequence[Query],
        asking: Asking,
        on_delta: Callable[[str], None] | None = None,
        on_step: Callable[[ProgressEvent], None] | None = None,
    ) -> list[Ticket]:
        """Queue one ticket per query, all or none: ``Overloaded`` when they would not fit now,
        ``TooLarge`` when they never could."""
        now = time.monotonic()
        tickets = [Ticket(query, asking, on_delta, arrived=now, on_step=on_step) for query in queries]
        if self.max_queue is not None and len(tickets) > self.max_queue:
            raise TooLarge(
                f"{len(tickets)} questions in one request; the queue holds at most {self.max_queue} (max_queue)",
                param="max_queue",
            )
        for ticket in tickets:
            ticket.trace()  # here, in the request's context
        with self._cond:
            if self._stopping:
                for ticket in tickets:
                    ticket.left_queue("stopping")
                raise Unavailable("the service is shutting down")
            if self.max_queue is not None and len(self._waiting) + len(tickets) > self.max_queue:
                refused = Overloaded(
                    f"the service is overloaded: {len(self._waiting)} questions are waiting and the queue holds "
                    f"{self.max_queue} (max_queue); {len(tickets)} more do not fit, retry later",
                    retry_after=self._drain_s(),
                    param="max_queue",
                )
            else:
                refused = None
                self._waiting.extend(tickets)
                self._queue_changed()
                self._cond.notify_all()
        if refused is not None:
            for ticket in tickets:
                ticket.left_queue("queue_full")
            self._refused("queue_full", 1)
            raise refused
        return tickets

    def cancel(self, ticket: Ticket, reason: str = "cancelled: the client went away") -> bool:
        """Cancel a ticket that has no answer yet; True if it was still waiting or running."""
        with self._cond:
            if ticket.future.done():
                return False
            ticket.cancelled = reason
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._queue_changed()
                ticket.left_queue("cancelled")
            ticket.future.cancel()
            ticket.begun.cancel()
            return True

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="coe-dispatcher", daemon=True)
        self._thread.start()
        if self.queue_timeout_s is not None:
            self._watcher = threading.Thread(target=self._watch_deadlines, name="coe-deadlines", daemon=True)
            self._watcher.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new tickets, fail the waiting ones, and let the batch in flight finish."""
        with self._cond:
            self._stopping = True
            waiting, self._waiting = self._waiting, []
            self._queue_changed()
            self._cond.notify_all()
        for ticket in waiting:
            settle(ticket, error=Unavailable("the service shut down before this request ran"))
        if self._thread is not None:
            self._thread.join(timeout)
        if self._watcher is not None:
            self._watcher.join(timeout)

    def retry_after(self) -> float:
        """Seconds the waiting tickets need to drain, as far as the recent batches tell."""
        with self._cond:
            return self._drain_s()

    # -- the dispatcher thread -------------------------------------------------------------------

    def _loop(self) -> None:
        if self._prepare is not None:
            try:
                self._prepare()
            except Exception as exc:  # noqa: BLE001 - the service still serves; readiness says what failed
                log.exception("warm-up failed")
                self.prepare_error = f"{type(exc).__name__}: {exc}"
        self.prepared.set()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch == "idle":
                self._housekeeping(self._on_idle)
                continue
            try:
                self._run(batch)
            except Exception:  # noqa: BLE001 - the thread every request waits on must live on
                log.exception("the dispatcher could not settle a batch")
                for ticket in batch:
                    settle(ticket, error=CoeError("the service failed to finish this request"))
            if batch:
                self._idle_due = self._on_idle is not None
                self._housekeeping(self._after_batch)

    def _housekeeping(self, step: Callable[[], None] | None) -> None:
        if step is None:
            return
        try:
            step()
        except Exception:  # noqa: BLE001 - housekeeping must not stop the dispatcher
            log.exception("the dispatcher's housekeeping failed")

    def _next_batch(self) -> list[Ticket] | Literal["idle"] | None:
        """The next batch; None when stopping; "idle" once no work came for ``idle_s`` after a batch."""
        with self._cond:
            while not self._waiting and not self._stopping:
                if not self._idle_due:
                    self._cond.wait()
                elif not self._cond.wait(self.idle_s) and not self._waiting:
                    self._idle_due = False
                    return "idle"
            if self._stopping:
                return None
            if self.grouping and self.gather_s > 0:
                deadline = self._waiting[0].arrived + self.gather_s
                while not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopping or not self._waiting:
                    return None if self._stopping else []
            late = self._take_late(time.monotonic())
            if late:
                self._queue_changed()
        if late:  # past their deadline just as the batch is chosen: refused, never run
            self._refuse_late(late)
        with self._cond:
            if self._stopping or not self._waiting:
                return None if self._stopping else []
            oldest = self._waiting[0]
            if self.grouping:
                batch = [t for t in self._waiting if t.asking == oldest.asking]
            else:
                batch = [oldest]
            batch = distinct(batch, self.max_batch)
            now = time.monotonic()
            for ticket in batch:
                self._waiting.remove(ticket)
                ticket.started = now
                begin(ticket)
                self.max_wait_s = max(self.max_wait_s, now - ticket.arrived)
                if self._on_wait is not None:
                    self._on_wait(now - ticket.arrived)
            self._running = {}
            for ticket in batch:
                self._running.setdefault(ticket.query.id, []).append(ticket)
            self._queue_changed()
            return batch

    def _run(self, batch: list[Ticket]) -> None:
        if not batch:
            return
        queries = list({t.query.id: t.query for t in batch}.values())
        hooks = BatchHooks(on_delta=self._delta, skip=self._skip, on_step=self._step)
        asking = batch[0].asking
        traced = {"coe.questions": len(queries), "coe.requests": len(batch), "coe.policy": asking.policy}
        started = time.monotonic()
        try:
            with tracing.span(
                "coe.batch", traced, parent=batch[0].context, links=[t.context for t in batch[1:]]
            ) as span:
                for ticket in batch[1:]:
                    tracing.link(ticket.asker, span)
                answers = self._run_batch(asking, queries, hooks)
        except CoeError as exc:
            for ticket in batch:
                settle(ticket, error=exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the thread every request waits on
            log.exception("batch of %d question(s) failed", len(queries))
            for ticket in batch:
                settle(ticket, error=exc)
        else:
            by_id = {a.question_id: a for a in answers}
            for ticket in batch:
                settle(ticket, answer=by_id.get(ticket.query.id))
        finally:
            seconds = max(time.monotonic() - started, 1e-3)
            with self._cond:
                self._running = {}
                rate = len(batch) / seconds
                self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate

    # -- deadlines ---------------------------------------------------------------------------------

    def _watch_deadlines(self) -> None:
        """Fails each waiting ticket when its deadline passes (the thread ``start`` adds)."""
        assert self.queue_timeout_s is not None
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                late = self._take_late(now)
                if late:
                    self._queue_changed()
                else:
                    first = self._waiting[0].arrived + self.queue_timeout_s - now if self._waiting else None
                    self._cond.wait(first)
                    continue
            self._refuse_late(late)

    def _take_late(self, now: float) -> list[Ticket]:
        """Waiting tickets past their deadline, taken out of the queue (hold the lock)."""
        if self.queue_timeout_s is None:
            return []
        cutoff = now - self.queue_timeout_s
        late = 0
        while late < len(self._waiting) and self._waiting[late].arrived <= cutoff:
            late += 1
        taken, self._waiting[:late] = self._waiting[:late], []
        return taken

    def _refuse_late(self, late: list[Ticket]) -> None:
        retry = self.retry_after()
        error = Overloaded(
            f"the service is overloaded: this request waited {self.queue_timeout_s:g} s (queue_timeout_s) "
            "without starting and was not run; retry later",
            retry_after=retry,
            param="queue_timeout_s",
        )
        for ticket in late:
            settle(ticket, error=error)
        self._refused("deadline", len(late))

    def _drain_s(self) -> float:
        """``retry_after``'s estimate (hold the lock): the queue over the recent rate, 1 s to the deadline."""
        if self._rate <= 0:
            return 1.0
        ceiling = self.queue_timeout_s if self.queue_timeout_s is not None else 600.0
        return min(max(1.0, len(self._waiting) / self._rate), ceiling)

    def _refused(self, reason: str, count: int) -> None:
        if self._on_refuse is not None:
            for _ in range(count):
                self._on_refuse(reason)

    def _tickets_of(self, task_id: str) -> list[Ticket]:
        qid = question_of(task_id)
        with self._cond:
            return list(self._running.get(qid, ()))

    def _delta(self, task_id: str, text: str) -> None:
        if not is_aggregate(task_id):
            return
        for ticket in self._tickets_of(task_id):
            if ticket.on_delta is not None and ticket.cancelled is None:
                try:
                    ticket.on_delta(text)
                except Exception:  # noqa: BLE001 - one listener's failure is not the batch's
                    log.exception("a stream listener failed")

    def _step(self, event: ProgressEvent) -> None:
        with self._cond:
            running = [ticket for tickets in self._running.values() for ticket in tickets]
        tell(running, event)

    def _skip(self, task: Task) -> str | None:
        tickets = self._tickets_of(task.id)
        if tickets and all(t.cancelled for t in tickets):
            return tickets[0].cancelled
        return None

    def _queue_changed(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._waiting))


__all__ = ["Asking", "BatchHooks", "Dispatcher", "RunBatch", "Ticket"]
