"""The bodies the HTTP client sends, checked as the service will check them: a caller's mistake
is one ``BadInput`` naming the field before anything is sent."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel, ValidationError

from common.errors import BadInput, field_path
from common.query import Query
from orchestrator.pipeline.inputs import as_query
from orchestrator.pipeline.turns import check_session, read_messages
from orchestrator.pipeline.turns import message_field as _field
from orchestrator.remote.wire import AnswerBatchRequest, AnswerRequest, BatchItem

_Body = TypeVar("_Body", bound=BaseModel)
_NO_LIMIT = sys.maxsize  # the service knows its own limits and says so (413)


def service_root(base_url: object) -> str:
    """The service's root URL, checked: http(s), a host, no ``/v1`` at the end."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise BadInput("base_url must be the service's URL, e.g. http://localhost:8000")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise BadInput(f"base_url {base_url!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise BadInput(f"base_url must start with http:// or https:// and name a host, got {base_url!r}")
    root = str(url).rstrip("/")
    return root.removesuffix("/v1")


def _item(question: object, options: object, id: object, field: str) -> dict[str, Any]:
    """One question as the wire takes it, checked as the SDK checks it."""
    if isinstance(question, Query) and (options is not None or id is not None):
        raise BadInput(f"{field}: give options and id inside the Query, not beside it")
    query = as_query(question, _NO_LIMIT, options=options, field=field)
    item: dict[str, Any] = {"question": query.text, "options": list(query.options) or None}
    item["id"] = query.id if isinstance(question, Query) else id
    return item


def answer_body(
    question: object, options: object, id: object, policy: object, k: object, max_tokens: object, aggregation: object
) -> dict[str, Any]:
    fields = _item(question, options, id, "question")
    request = checked(AnswerRequest, {**fields, **_ask(policy, k, max_tokens, aggregation)})
    return request.model_dump(mode="json", exclude_none=True)


def batch_body(questions: object, policy: object, k: object, max_tokens: object, aggregation: object) -> dict[str, Any]:
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        raise BadInput("a batch takes a list of questions")
    if not questions:
        raise BadInput("a batch needs at least one question")
    items: list[str | BatchItem] = []
    for i, question in enumerate(questions):
        field = f"questions[{i}]"
        item = _item(question, None, None, field)
        if isinstance(question, Query):
            items.append(checked(BatchItem, item, field))
        else:
            items.append(item["question"])
    request = checked(AnswerBatchRequest, {"questions": items, **_ask(policy, k, max_tokens, aggregation)})
    return request.model_dump(mode="json", exclude_none=True)


def _ask(policy: object, k: object, max_tokens: object, aggregation: object) -> dict[str, Any]:
    if isinstance(k, bool) or isinstance(max_tokens, bool):  # pydantic would take True for 1
        raise BadInput("k and max_tokens must be integers, not True or False")
    return {"policy": policy, "k": k, "max_tokens": max_tokens, "aggregation": aggregation}


def checked(model: type[_Body], fields: dict[str, Any], where: str = "") -> _Body:
    """The wire body the service will accept, or BadInput naming the first field it would refuse."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(part for part in (where, field_path(first["loc"])) if part)
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise BadInput(f"{name or 'request'}: {first['msg']}, got {shown}") from exc


def chat_body(
    messages: object, session: object, policy: object, k: object, max_tokens: object, aggregation: object
) -> dict[str, Any]:
    """A conversation for ``POST /v1/answer``: its messages checked as the service reads them."""
    read_messages(
        messages, max_question_chars=_NO_LIMIT, max_conversation_chars=_NO_LIMIT, session=check_session(session)
    )
    given = cast(Sequence[object], messages)  # read_messages took it: a list of messages
    shown = [{"role": _field(m, "role"), "content": _field(m, "content")} for m in given]
    fields = {"messages": shown, "session": session, **_ask(policy, k, max_tokens, aggregation)}
    return checked(AnswerRequest, fields).model_dump(mode="json", exclude_none=True)


__all__ = ["answer_body", "batch_body", "chat_body", "checked", "service_root"]
