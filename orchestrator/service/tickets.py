"""What waits in the dispatcher's queue: a ``Ticket`` per request, asked some way (``Asking``), and
how a ticket is settled with its answer or error. A ticket keeps its request's trace (when
something traces): its wait is a ``coe.queue`` span there, and its answer carries that trace's id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batching.results import ProgressEvent
from common import tracing
from common.errors import CoeError
from common.query import Query
from common.tasks import Task
from common.vocabulary import Aggregation, SemanticMode
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
    semantic: SemanticMode = "off"
    """How the request uses the semantic cache (``orchestrator.service.semantic``)."""


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
    begun: Future[None] = field(default_factory=Future)
    """Done when the ticket leaves the queue for its batch; failed like ``future`` when it never
    does (refused past its deadline, the service stopping)."""
    cancelled: str | None = None
    on_step: Callable[[ProgressEvent], None] | None = None
    """Hears each step of its batch (from the dispatcher thread): the live page's playground."""
    context: Context | None = None
    """The trace context it was submitted in (None while nothing traces)."""
    asker: Span | None = None
    """The span that submitted it (its request's), linked to the batch that answers it."""
    waiting: Span | None = None
    """Its ``coe.queue`` span, from ``trace()`` until it leaves the queue."""

    def trace(self, queued: bool = True) -> None:
        """Remember the request's trace (call it in the submitting request's context), and start
        the ticket's ``coe.queue`` span in it when it is ``queued``."""
        if tracing.tracer() is not None:
            self.context, self.asker = tracing.here(), tracing.current_span()
            if queued:
                self.waiting = tracing.start("coe.queue", {"coe.question_id": self.query.id})

    @property
    def trace_id(self) -> str | None:
        """The trace of the request that submitted it (None while nothing traces)."""
        return tracing.trace_id(self.asker) if self.asker is not None else None

    def left_queue(self, why: str | None = None) -> None:
        """End its ``coe.queue`` span (``why``: it left without running)."""
        waiting, self.waiting = self.waiting, None
        tracing.end(waiting, {"coe.refused": why})


@dataclass(frozen=True)
class BatchHooks:
    """What the dispatcher hands the code that runs a batch."""

    on_delta: Callable[[str, str], None]
    """(task id, text) from engines that stream."""
    skip: Callable[[Task], str | None]
    """Why a task should not run (its requests were all cancelled), or None."""
    on_step: Callable[[ProgressEvent], None] = lambda event: None
    """Each step of the batch (routing, loads, generations), told to the tickets that listen."""


RunBatch = Callable[[Asking, Sequence[Query], BatchHooks], list[Answer]]
"""Answers a batch of distinct queries asked one way, in order."""


def distinct(tickets: list[Ticket], limit: int) -> list[Ticket]:
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


def tell(tickets: Sequence[Ticket], event: ProgressEvent) -> None:
    """Tell a step of their batch to the tickets that listen (``Ticket.on_step``)."""
    for ticket in tickets:
        if ticket.on_step is not None and ticket.cancelled is None:
            try:
                ticket.on_step(event)
            except Exception:  # noqa: BLE001 - one listener's failure is not the batch's
                log.exception("a step listener failed")


def begin(ticket: Ticket) -> None:
    """The ticket has left the queue for its batch (``Ticket.begun``)."""
    ticket.left_queue()
    try:
        ticket.begun.set_result(None)
    except InvalidStateError:  # cancelled by its client meanwhile
        pass


def settle(ticket: Ticket, *, answer: Answer | None = None, error: BaseException | None = None) -> None:
    """Give the ticket its answer or error, unless it has one or was cancelled (even just now)."""
    if error is None and answer is None:
        error = CoeError(f"the batch returned no answer for question {ticket.query.id!r}")
    if ticket.waiting is not None:
        ticket.left_queue(type(error).__name__ if error is not None else None)
    if answer is not None and ticket.trace_id is not None:  # given in its request's trace
        answer = answer.traced(ticket.trace_id)
    if error is not None and not ticket.begun.done():  # it never left the queue
        try:
            ticket.begun.set_exception(error)
        except InvalidStateError:
            pass
    try:
        if error is not None:
            ticket.future.set_exception(error)
        else:
            ticket.future.set_result(answer)  # type: ignore[arg-type]
    except InvalidStateError:  # cancelled by its client, or settled, meanwhile
        pass


__all__ = ["Asking", "BatchHooks", "RunBatch", "Ticket", "begin", "distinct", "settle", "tell"]
