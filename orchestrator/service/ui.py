"""The live page: ``GET /ui``, behind the same API keys as the rest (a browser is asked for the
key by HTTP Basic; the key is the password).

It shows the requests per second, the latency percentiles, the queue (waiting requests, and
what each model still owes the batch in flight), the models loaded, sleeping or not, their loads
and swaps, the caller's recent answers with their traces, the caller's jobs and their progress;
and a playground that asks a question of the pool with a policy and shows each step of its batch
as it happens, the aggregator's text as it is written, then the answer and its trace.

    GET  /ui                   the page (HTML)
    GET  /ui/assets/{name}     its script and style sheet, shipped in the package
    GET  /ui/api/live          a snapshot of the above, polled by the page
    GET  /ui/api/answers/{n}   one recent answer, whole, with its trace
    POST /ui/api/ask           the playground: server-sent events (queued, started, step, delta,
                               then answer or error)

The page loads nothing from anywhere else (its Content-Security-Policy allows only itself). Its
data and assets spend no request of a key's rate limit; the page itself and the playground's
questions do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from batching.results import ProgressEvent
from common.errors import CoeError, NotFound
from orchestrator.remote.errors import INTERNAL, status_of
from orchestrator.remote.wire import AnswerRequest, ErrorBody
from orchestrator.service.answers import answer_query, cancel
from orchestrator.service.guard import caller_of, guard, key_guard
from orchestrator.service.intake import submit
from orchestrator.service.state import Service
from orchestrator.service.tickets import Ticket
from router import POLICIES

router = APIRouter(prefix="/ui")

ASSETS = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}
"""The page's files (``orchestrator/service/assets``) and their media types."""

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load and call nothing but this service."""

_HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@cache
def _asset(name: str) -> bytes:
    return (resources.files("orchestrator.service") / "assets" / name).read_bytes()


@router.get("", dependencies=[Depends(guard)])
async def page() -> Response:
    """The live page."""
    return Response(_asset("ui.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/assets/{name}", dependencies=[Depends(key_guard)])
async def asset(name: str) -> Response:
    """The page's script or style sheet."""
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r}")
    return Response(_asset(name), media_type=ASSETS[name], headers=_HEADERS)


@router.get("/api/live", dependencies=[Depends(key_guard)])
async def live(request: Request) -> dict[str, Any]:
    """What the page shows now (the caller's answers and jobs only)."""
    service: Service = request.app.state.service
    return await run_in_threadpool(snapshot, service, caller_of(request))


@router.get("/api/answers/{number}", dependencies=[Depends(key_guard)])
async def served(number: int, request: Request) -> dict[str, Any]:
    """One of the caller's recent answers, whole: the question, the answer and its trace."""
    service: Service = request.app.state.service
    found = service.live.served(number, caller_of(request))
    if found is None:
        raise NotFound(f"no recent answer {number} (the page keeps the latest {service.live.keep_answers})")
    return found.detail()


def snapshot(service: Service, caller: str | None) -> dict[str, Any]:
    """The live page's data: the service's traffic, queue and models; the caller's answers and jobs."""
    coe = service.coe
    counts = _samples(service)
    loaded, asleep = set(coe.loaded_models), set(service.made.asleep())
    aggregator = coe.pool.aggregator.name
    models = [
        {
            "name": name,
            "role": "aggregator" if name == aggregator else "expert",
            "state": "sleeping" if name in asleep else "loaded" if name in loaded else "not loaded",
            "owed": counts.get(("coe_expert_queue_depth", name), 0.0),
            "loads": counts.get(("coe_model_loads_total", name), 0.0),
            "swaps": counts.get(("coe_model_swaps_total", name), 0.0),
        }
        for name in coe.pool.specs
    ]
    try:
        jobs: Any = [job.model_dump(mode="json") for job in service.jobs.list(10, caller=caller)]
    except CoeError as exc:
        jobs = {"error": service.redact(str(exc))}
    return {
        "pool": service.pool,
        "policies": list(POLICIES),
        "policy": coe.settings.policy,
        "k": coe.settings.k,
        "ready": service.dispatcher.prepared.is_set(),
        "uptime_s": round(service.live.uptime_s, 1),
        "queue": {"waiting": service.dispatcher.depth, "batches": counts.get(("coe_batches_total", ""), 0.0)},
        "traffic": service.live.traffic(),
        "models": models,
        "recent": [one.summary() for one in service.live.recent(caller)],
        "jobs": jobs,
    }


def _samples(service: Service) -> dict[tuple[str, str], float]:
    """The service's metric samples by (name, first label's value): one pass over its registry."""
    out: dict[tuple[str, str], float] = {}
    for metric in service.metrics.registry.collect():
        for sample in metric.samples:
            label = next(iter(sample.labels.values()), "")
            out[sample.name, label] = out.get((sample.name, label), 0.0) + sample.value
    return out


@router.post("/api/ask", dependencies=[Depends(guard)])
async def ask(body: AnswerRequest, request: Request) -> StreamingResponse:
    """The playground: the question (or conversation) asked as ``POST /v1/answer`` asks it (the caller's budgets, the
    semantic cache, then the dispatcher: ``orchestrator.service.intake``), answered as server-sent
    events: ``queued`` (the requests ahead), ``started`` (its batch began), ``step`` (each step of
    the batch: routing done, a model loading or loaded, a model's generations so far), ``delta``
    (the aggregator's text as it is written), then ``answer`` (the answer and its trace) or
    ``error`` (the service's error body)."""
    service: Service = request.app.state.service
    query = answer_query(service, body, caller_of(request))
    asking = await run_in_threadpool(service.asking, body.policy, body.k, body.aggregation, body.max_tokens)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, data: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, data))

    begun: list[bool] = []

    def step(event: ProgressEvent) -> None:  # from the dispatcher thread, in order
        if not begun:
            begun.append(True)
            put("started", {})  # its batch's first step
        put("step", event.model_dump(mode="json", exclude_defaults=True))

    def delta(text: str) -> None:
        put("delta", {"text": text})

    ahead = service.dispatcher.depth
    (ticket,) = await submit(request, service, [query], asking, delta, step)
    return StreamingResponse(
        _events(service, ticket, events, ahead),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    service: Service,
    ticket: Ticket,
    events: asyncio.Queue[tuple[str, Any]],
    ahead: int,
) -> AsyncIterator[str]:
    done = asyncio.wrap_future(ticket.future)
    try:
        yield _event("queued", {"ahead": ahead, "policy": ticket.asking.policy, "k": ticket.asking.k})
        while not (done.done() and events.empty()):
            getter = asyncio.ensure_future(events.get())
            waiting: set[asyncio.Future[Any]] = {getter, done}
            finished, _ = await asyncio.wait(waiting, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                kind, data = getter.result()
                yield _event(kind, data)
                continue
            getter.cancel()
            if not finished:
                yield ": still working\n\n"  # keeps proxies from closing an idle stream
        try:
            answer = done.result()
            if answer.error:
                raise answer.failure()
        except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes in it, as one event
            status, kind = status_of(exc) if isinstance(exc, CoeError) else INTERNAL
            message = service.redact(str(exc)) if isinstance(exc, CoeError) else "internal error"
            yield _event("error", ErrorBody(message=message, type=kind, code=str(status)).model_dump(mode="json"))
            return
        yield _event("answer", answer.model_dump(mode="json"))
    finally:
        if not ticket.future.done():
            cancel(service, [ticket])


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


__all__ = ["router", "snapshot"]
