"""What waits in the dispatcher's queue: a ``Ticket`` per request, asked some way (``Asking``), and
how a ticket is settled with its answer or error."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from common.errors import CoeError
from common.query import Query
from common.tasks import Task
from common.vocabulary import Aggregation
from orchestrator.pipeline.trace import Answer


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
    begun: Future[None] = field(default_factory=Future)
    """Done when the ticket leaves the queue for its batch; failed like ``future`` when it never
    does (refused past its deadline, the service stopping)."""
    cancelled: str | None = None


@dataclass(frozen=True)
class BatchHooks:
    """What the dispatcher hands the code that runs a batch."""

    on_delta: Callable[[str, str], None]
    """(task id, text) from engines that stream."""
    skip: Callable[[Task], str | None]
    """Why a task should not run (its requests were all cancelled), or None."""


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


def begin(ticket: Ticket) -> None:
    """The ticket has left the queue for its batch (``Ticket.begun``)."""
    try:
        ticket.begun.set_result(None)
    except InvalidStateError:  # cancelled by its client meanwhile
        pass


def settle(ticket: Ticket, *, answer: Answer | None = None, error: BaseException | None = None) -> None:
    """Give the ticket its answer or error, unless it has one or was cancelled (even just now)."""
    if error is None and answer is None:
        error = CoeError(f"the batch returned no answer for question {ticket.query.id!r}")
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


__all__ = ["Asking", "BatchHooks", "RunBatch", "Ticket", "begin", "distinct", "settle"]
