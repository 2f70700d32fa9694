"""Chat messages as callers send them (the OpenAI shape: ``role`` and ``content``), checked and
made a chat turn: a ``Query`` whose text is the last user message and whose ``conversation``
holds the messages before it. The SDK's ``chat``, the HTTP client and the service's routes all
read messages here, so a conversation is refused, or taken, the same way through every door.

Refused, each with one line naming the field (``messages[2].role``, ``messages[0].content[1].type``):
roles out of order (the user's and the assistant's messages take turns, the user's first and
last; system messages only first), empty messages, content parts that are not text (images,
audio, files: ``Unsupported``), tool messages and tool calls (``Unsupported``), a last message
over the question limit and a conversation over its size limits (``TooLarge``). ``developer``
is OpenAI's newer name for ``system``; several system messages first are joined into one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.conversation import Conversation, order_problem
from common.errors import BadInput, TooLarge, Unsupported
from common.query import Query
from common.requests import Message
from orchestrator.pipeline.inputs import check_question

MAX_MESSAGES = 1_000
"""The most messages one conversation may hold."""

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TOOL_ROLES = ("tool", "function")


def message_field(message: object, name: str) -> object:
    """A field of a message (or a content part) given as a mapping or as an object."""
    if isinstance(message, Mapping):
        return message.get(name)
    return getattr(message, name, None)


def _text(content: object, where: str) -> str:
    """The text of one message's content: a string, or a list of text parts (joined by newlines)."""
    if isinstance(content, str):
        return content
    if content is None:
        raise BadInput(f"{where} is empty", param=where)
    if isinstance(content, Sequence) and not isinstance(content, bytes):
        texts = []
        for j, part in enumerate(content):
            kind = message_field(part, "type")
            if kind != "text":
                shown = kind if isinstance(kind, str) else type(part).__name__
                raise Unsupported(
                    f"{where}[{j}].type: content parts of type {shown!r} are not supported; send text",
                    param=f"{where}[{j}].type",
                )
            text = message_field(part, "text")
            if not isinstance(text, str):
                raise BadInput(f"{where}[{j}].text must be a string", param=f"{where}[{j}].text")
            texts.append(text)
        return "\n".join(texts)
    raise BadInput(f"{where} must be a string or a list of text parts, got {type(content).__name__}", param=where)


def read_messages(
    messages: object,
    *,
    max_question_chars: int,
    max_conversation_chars: int,
    session: str | None = None,
    field: str = "messages",
) -> Query:
    """The chat turn ``messages`` make (see the module's docstring); ``session`` names its
    conversation for session affinity. BadInput (or one of its kinds) naming the field otherwise."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise BadInput(f"{field} must be a list of messages", param=field)
    if not messages:
        raise BadInput(f"{field}: give at least one message", param=field)
    if len(messages) > MAX_MESSAGES:
        raise TooLarge(f"{field}: {len(messages)} messages; the limit is {MAX_MESSAGES}", param=field)
    roles: list[str] = []
    texts: list[str] = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        role = message_field(message, "role")
        if role in _TOOL_ROLES:
            raise Unsupported(
                f"{where}.role: {role} messages are not supported (no tools are called)", param=f"{where}.role"
            )
        for name in ("tool_calls", "function_call"):
            if message_field(message, name):
                raise Unsupported(f"{where}.{name}: tool calls are not supported", param=f"{where}.{name}")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadInput(
                f"{where}.role must be user, assistant, system or developer, got {role!r}", param=f"{where}.role"
            )
        text = _text(message_field(message, "content"), f"{where}.content")
        if not text.strip():
            raise BadInput(f"{where}.content is empty", param=f"{where}.content")
        roles.append(_ROLES[role])
        texts.append(text)
    total = sum(len(t) for t in texts)
    if total > max_conversation_chars:
        raise TooLarge(
            f"{field}: the conversation is {total} characters long; the limit is {max_conversation_chars} "
            "(max_conversation_chars)",
            param=field,
        )
    if "user" not in roles:
        raise BadInput(f"{field}: no user message to answer", param=field)
    system = 0
    while system < len(roles) and roles[system] == "system":
        system += 1
    joined_roles = (["system"] if system else []) + roles[system:]
    problem = order_problem(joined_roles)
    if problem is not None:
        index, why = problem
        at = index + max(0, system - 1)  # back to the caller's numbering
        raise BadInput(f"{field}[{at}].role: {why}", param=f"{field}[{at}].role")
    last = len(texts) - 1
    limit_name = f"{field}[{last}].content"
    if len(texts[last].strip()) > max_question_chars:
        raise TooLarge(
            f"{limit_name} is {len(texts[last].strip())} characters long; the limit is {max_question_chars} "
            "(max_question_chars)",
            param=limit_name,
        )
    question = _checked(texts[last], max_question_chars, limit_name)
    history: list[Message] = []
    if system:
        parts = [_checked(t, max_conversation_chars, f"{field}[{i}].content") for i, t in enumerate(texts[:system])]
        history.append(Message(role="system", content="\n\n".join(parts)))
    for i in range(system, last):
        # an assistant's message is a model's text sent back: control characters it wrote are kept
        content = _checked(texts[i], max_conversation_chars, f"{field}[{i}].content", roles[i] == "user")
        history.append(Message(role=roles[i], content=content))
    return Query(text=question, conversation=Conversation(history=tuple(history), session=session))


def _checked(text: str, limit: int, where: str, controls: bool = True) -> str:
    try:
        return check_question(text, limit, field=where, controls=controls)
    except BadInput as exc:
        raise BadInput(str(exc), param=where) from None


def check_session(session: object, field: str = "session") -> str | None:
    """A session name as a caller gives it: None, or 1 to 300 characters of text."""
    if session is None:
        return None
    if not isinstance(session, str) or not session.strip() or len(session) > 300:
        raise BadInput(f"{field} must be a name of 1 to 300 characters, got {session!r:.60}", param=field)
    return session.strip()


__all__ = ["MAX_MESSAGES", "check_session", "message_field", "read_messages"]
