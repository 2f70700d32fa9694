"""How a route hands its questions to the service: ``submit``.

In order: the caller's budgets are checked (429 ``budget_exceeded`` when one is spent); the
semantic cache, where it is on and the request did not refuse it, answers what it can; the rest
go to the dispatcher (the one pipeline), all queued or all refused (503 ``overloaded``). Every
answer is counted against the caller's key: a reused one at once, the others when their batch
settles them (even if their client left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from functools import partial

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from batching.results import ProgressEvent
from common.query import Query
from orchestrator.pipeline.trace import Answer
from orchestrator.service.guard import caller_of
from orchestrator.service.semantic import semantic_mode
from orchestrator.service.state import Service
from orchestrator.service.tenants import Tenants
from orchestrator.service.tickets import Asking, Ticket, begin, settle

log = logging.getLogger(__name__)


async def submit(
    request: Request,
    service: Service,
    queries: Sequence[Query],
    asking: Asking,
    on_delta: Callable[[str], object] | None = None,
    on_step: Callable[[ProgressEvent], None] | None = None,
) -> list[Ticket]:
    """One ticket per query, in order (see the module); a reused answer's ticket is settled.
    ``on_delta`` and ``on_step`` (a lone question's) hear the aggregator's text and its batch's
    steps; the live page keeps every answer as the caller's."""
    caller = caller_of(request)
    tenants = service.tenants
    if tenants is not None:
        await run_in_threadpool(tenants.check, caller)
    cache = service.semantic
    asking = replace(asking, semantic=semantic_mode(request.headers, cache is not None))
    reused: list[Answer | None] = [None] * len(queries)
    if cache is not None and asking.semantic == "use":
        reused = await run_in_threadpool(cache.look, queries, asking)
    elif cache is not None:
        cache.refused(len(queries))
    hits = [answer for answer in reused if answer is not None]
    if tenants is not None and hits:
        await run_in_threadpool(tenants.charge, caller, hits)
    missed = [query for query, answer in zip(queries, reused, strict=True) if answer is None]
    if (on_delta is not None or on_step is not None) and len(missed) == 1:
        queued = [service.submit(missed[0], asking, on_delta, on_step=on_step, caller=caller)]
    else:
        queued = service.submit_all(missed, asking, caller=caller) if missed else []
    waiting = iter(queued)
    tickets = []
    for query, answer in zip(queries, reused, strict=True):
        if answer is not None:
            ticket = Ticket(query, asking)
            ticket.trace(queued=False)
            service.live.watch([ticket], caller)
            begin(ticket)
            settle(ticket, answer=answer.traced(ticket.trace_id))  # made in another request's trace
        else:
            ticket = next(waiting)
            if tenants is not None and caller is not None:
                ticket.future.add_done_callback(partial(_charge, tenants, caller))
        tickets.append(ticket)
    return tickets


def _charge(tenants: Tenants, caller: str, future: Future[Answer]) -> None:
    """Count a settled ticket's answer (none for a cancelled or failed one)."""
    if future.cancelled() or future.exception() is not None:
        return
    try:
        tenants.charge(caller, [future.result()])
    except Exception:  # noqa: BLE001 - a callback of the dispatcher's thread must not raise
        log.exception("key %s: an answer was not counted", caller)


__all__ = ["submit"]
