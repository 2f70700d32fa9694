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

Traces (``common.tracing``, when something traces): a ticket's wait is a ``coe.queue`` span in
its request's trace; a batch is one ``coe.batch`` span, a child of its oldest ticket's request
and linked to every other ticket's (whose request spans link back to it), so each request's
trace leads to the work that answered it; each answer carries its own request's trace id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common import tracing
from common.errors import CoeError, Unavailable
from common.query import Query
from common.tasks import Task
from common.vocabulary import Aggregation
from orchestrator.pipeline.task_ids import is_aggregate, question_of
from orchestrator.pipeline.trace import Answer

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asking:
    """How a request is to be answered; requests asked the same way can share a batch."""

    policy: str
    k: int
    aggregation: Aggregation = "synthesis"
    max_tokens: int | None = None


@dataclass(eq=False)
class Ticket:
    """One request waiting for its answer."""

    query: Query
    asking: Asking
    on_delta: Callable[[str], None] | None = None
    """Called with the aggregator's text as it is generated (from the dispatcher thread)."""
    arrived: float = field(default_factory=time.monotonic)
    started: float | None = None
    future: Future[Answer] = field(default_factory=Future)
    cancelled: str | None = None
    context: Context | None = None
    """The trace context it was submitted in (None while nothing traces)."""
    asker: Span | None = None
    """The span that submitted it (its request's), linked to the batch that answers it."""
    waiting: Span | None = None
    """Its ``coe.queue`` span, ended when its batch starts."""

    @property
    def trace_id(self) -> str | None:
        """The trace of the request that submitted it (None while nothing traces)."""
        return tracing.trace_id(self.asker) if self.asker is not None else None


@dataclass(frozen=True)
class BatchHooks:
    """What the dispatcher hands the code that runs a batch."""

    on_delta: Callable[[str, str], None]
    """(task id, text) from engines that stream."""
    skip: Callable[[Task], str | None]
    """Why a task should not run (its requests were all cancelled), or None."""


RunBatch = Callable[[Asking, Sequence[Query], BatchHooks], list[Answer]]
"""Answers a batch of distinct queries asked one way, in order."""


class Dispatcher:
    """A queue of tickets and the thread that runs them in batches (see the module's docstring)."""

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        grouping: bool = True,
        max_batch: int = 256,
        gather_s: float = 0.02,
        on_queue: Callable[[int], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.grouping = grouping
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._on_queue = on_queue
        self._on_wait = on_wait
        self._waiting: list[Ticket] = []
        self._running: dict[str, list[Ticket]] = {}  # query id -> tickets of the batch in flight
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.max_wait_s = 0.0
        """The longest a ticket has waited for its batch to start."""

    # -- the caller's side ----------------------------------------------------------------------

    def submit(self, query: Query, asking: Asking, on_delta: Callable[[str], None] | None = None) -> Ticket:
        ticket = Ticket(query, asking, on_delta)
        if tracing.tracer() is not None:
            ticket.context, ticket.asker = tracing.here(), tracing.current_span()
            ticket.waiting = tracing.start("coe.queue", {"coe.question_id": query.id})
        with self._cond:
            if self._stopping:
                raise Unavailable("the service is shutting down")
            self._waiting.append(ticket)
            self._queue_changed()
            self._cond.notify_all()
        return ticket

    def cancel(self, ticket: Ticket, reason: str = "cancelled: the client went away") -> bool:
        """Cancel a ticket that has no answer yet; True if it was still waiting or running."""
        with self._cond:
            if ticket.future.done():
                return False
            ticket.cancelled = reason
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._queue_changed()
                tracing.end(ticket.waiting, {"coe.cancelled": reason})
            ticket.future.cancel()
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

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new tickets, fail the waiting ones, and let the batch in flight finish."""
        with self._cond:
            self._stopping = True
            waiting, self._waiting = self._waiting, []
            self._queue_changed()
            self._cond.notify_all()
        for ticket in waiting:
            tracing.end(ticket.waiting, {"coe.cancelled": "the service shut down"})
            _settle(ticket, error=Unavailable("the service shut down before this request ran"))
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the dispatcher thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception:  # noqa: BLE001 - the thread every request waits on must live on
                log.exception("the dispatcher could not settle a batch")
                for ticket in batch:
                    _settle(ticket, error=CoeError("the service failed to finish this request"))

    def _next_batch(self) -> list[Ticket] | None:
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            if self.grouping and self.gather_s > 0:
                deadline = self._waiting[0].arrived + self.gather_s
                while not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopping or not self._waiting:
                    return None if self._stopping else []
            oldest = self._waiting[0]
            if self.grouping:
                batch = [t for t in self._waiting if t.asking == oldest.asking]
            else:
                batch = [oldest]
            batch = _distinct(batch, self.max_batch)
            now = time.monotonic()
            for ticket in batch:
                self._waiting.remove(ticket)
                tracing.end(ticket.waiting, {"coe.batch_questions": len(batch)})
                ticket.started = now
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
        hooks = BatchHooks(on_delta=self._delta, skip=self._skip)
        asking = batch[0].asking
        traced = {"coe.questions": len(queries), "coe.requests": len(batch), "coe.policy": asking.policy}
        try:
            with tracing.span(
                "coe.batch", traced, parent=batch[0].context, links=[t.context for t in batch[1:]]
            ) as span:
                for ticket in batch[1:]:
                    tracing.link(ticket.asker, span)
                answers = self._run_batch(asking, queries, hooks)
        except CoeError as exc:
            for ticket in batch:
                _settle(ticket, error=exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the thread every request waits on
            log.exception("batch of %d question(s) failed", len(queries))
            for ticket in batch:
                _settle(ticket, error=exc)
        else:
            by_id = {a.question_id: a for a in answers}
            for ticket in batch:
                found = by_id.get(ticket.query.id)
                _settle(ticket, answer=found.traced(ticket.trace_id) if found is not None else None)
        finally:
            with self._cond:
                self._running = {}

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

    def _skip(self, task: Task) -> str | None:
        tickets = self._tickets_of(task.id)
        if tickets and all(t.cancelled for t in tickets):
            return tickets[0].cancelled
        return None

    def _queue_changed(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._waiting))


def _distinct(tickets: list[Ticket], limit: int) -> list[Ticket]:
    """Tickets (oldest first) whose queries can share a batch: at most ``limit`` distinct
    queries; a ticket whose id is taken by a different query waits for a later batch."""
    chosen: list[Ticket] = []
    seen: dict[str, Query] = {}
    for ticket in tickets:
        same = seen.get(ticket.query.id)
        if same is None:
            if len(seen) == limit:
                continue
            seen[ticket.query.id] = ticket.query
        elif same != ticket.query:
            continue
        chosen.append(ticket)
    return chosen


def _settle(ticket: Ticket, *, answer: Answer | None = None, error: BaseException | None = None) -> None:
    """Give the ticket its answer or error, unless it has one or was cancelled (even just now)."""
    if error is None and answer is None:
        error = CoeError(f"the batch returned no answer for question {ticket.query.id!r}")
    try:
        if error is not None:
            ticket.future.set_exception(error)
        else:
            ticket.future.set_result(answer)  # type: ignore[arg-type]
    except InvalidStateError:  # cancelled by its client, or settled, meanwhile
        pass


__all__ = ["Asking", "BatchHooks", "Dispatcher", "RunBatch", "Ticket"]
