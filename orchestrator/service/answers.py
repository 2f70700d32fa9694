"""``POST /v1/answer`` and ``POST /v1/answer/batch``: the service's own way in (the SDK's ``Client``).

``/v1/answer`` takes a question, or a conversation (``messages``, its last user message answered
in the context of the others; ``session`` names it for session affinity)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from common.errors import BadInput, TooLarge
from common.query import Query
from orchestrator.pipeline.inputs import as_query
from orchestrator.pipeline.trace import Answer
from orchestrator.pipeline.turns import check_session, read_messages
from orchestrator.remote.wire import AnswerBatchRequest, AnswerBatchResponse, AnswerRequest, BatchItem
from orchestrator.service.dispatch import Ticket
from orchestrator.service.guard import caller_of
from orchestrator.service.intake import submit
from orchestrator.service.state import Service

router = APIRouter(prefix="/v1")

_POLL_S = 0.25
"""How often a waiting request looks whether its client went away."""


@router.post("/answer")
async def answer(body: AnswerRequest, request: Request) -> Answer:
    """One question: its answer and trace. 502 when no expert answered (404 ``replay_miss`` when
    none holds a recording of it)."""
    service: Service = request.app.state.service
    query = answer_query(service, body, caller_of(request))
    asking = await run_in_threadpool(service.asking, body.policy, body.k, body.aggregation, body.max_tokens)
    (found,) = await wait_for(request, service, await submit(request, service, [query], asking))
    if found.error:
        raise found.failure()
    return found


@router.post("/answer/batch")
async def answer_batch(body: AnswerBatchRequest, request: Request) -> AnswerBatchResponse:
    """Several questions, answered in one batch where they can be; answers in order. A question
    whose experts all failed has ``error`` set."""
    service: Service = request.app.state.service
    limit = service.settings.max_batch_questions
    if len(body.questions) > limit:
        raise TooLarge(
            f"{len(body.questions)} questions; the limit is {limit} (max_batch_questions)", param="max_batch_questions"
        )
    queries = [_item(service, item, i) for i, item in enumerate(body.questions)]
    repeated = [qid for qid, n in Counter(q.id for q in queries).items() if n > 1]
    if repeated:
        raise BadInput(f"question ids must be unique in a batch; repeated: {repeated[0]!r}")
    asking = await run_in_threadpool(service.asking, body.policy, body.k, body.aggregation, body.max_tokens)
    tickets = await submit(request, service, queries, asking)  # all queued, or all refused (503 overloaded)
    return AnswerBatchResponse(answers=await wait_for(request, service, tickets))


def checked_query(service: Service, text: str, options: Sequence[str] | None, qid: str | None, field: str) -> Query:
    """The query of a request, its question checked against the length limit (422 naming it)."""
    limit = service.coe.settings.max_question_chars
    if len(text) > limit:
        raise BadInput(
            f"{field} is {len(text)} characters long; the limit is {limit} (max_question_chars)",
            param="max_question_chars",
        )
    query = as_query(text, limit, options=options, field=field)
    return query.model_copy(update={"id": qid}) if qid else query


def answer_query(service: Service, body: AnswerRequest, caller: str | None) -> Query:
    """What ``POST /v1/answer`` asks: its question (with options), or its conversation (``messages``)."""
    if body.messages is not None:
        if body.question is not None or body.options is not None:
            what = "question" if body.question is not None else "options"
            raise BadInput(f"{what}: give a question (with options) or messages, not both", param=what)
        query = conversation_query(service, body.messages, body.session, caller)
        return query.model_copy(update={"id": body.id}) if body.id else query
    if body.question is None:
        raise BadInput("question: give a question, or messages (a conversation)", param="question")
    return checked_query(service, body.question, body.options, body.id, "question")


def conversation_query(service: Service, messages: Sequence[object], session: str | None, caller: str | None) -> Query:
    """The chat turn of a request's ``messages`` (``orchestrator.pipeline.turns``), its session
    named by ``session`` (a caller's name, kept apart from other keys' names by ``caller``)."""
    settings = service.coe.settings
    name = check_session(session)
    if name is not None and caller is not None:
        name = f"{caller}/{name}"  # one key's names never meet another's
    return read_messages(
        messages,
        max_question_chars=settings.max_question_chars,
        max_conversation_chars=settings.max_conversation_chars,
        session=name,
    )


def _item(service: Service, item: str | BatchItem, i: int) -> Query:
    if isinstance(item, str):
        return checked_query(service, item, None, None, f"questions[{i}]")
    return checked_query(service, item.question, item.options, item.id, f"questions[{i}]")


async def wait_for(request: Request, service: Service, tickets: list[Ticket]) -> list[Answer]:
    """The tickets' answers; if the client goes away first, the tickets are cancelled."""
    waiting = [asyncio.wrap_future(t.future) for t in tickets]
    try:
        while True:
            _, pending = await asyncio.wait(waiting, timeout=_POLL_S)
            if not pending:
                return [w.result() for w in waiting]
            if await request.is_disconnected():
                cancel(service, tickets)
                raise ClientGone()
    except asyncio.CancelledError:
        cancel(service, tickets)
        raise


class ClientGone(Exception):
    """The client went away before its answer: nobody to answer (logged as 499, no body)."""


def cancel(service: Service, tickets: list[Ticket]) -> None:
    for ticket in tickets:
        if service.dispatcher.cancel(ticket):
            service.metrics.cancelled.inc()


__all__ = ["ClientGone", "answer_query", "cancel", "checked_query", "conversation_query", "router", "wait_for"]
