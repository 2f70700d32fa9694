"""Checks on what callers hand the SDK, CLI and (later) REST layer: one-line errors."""

from __future__ import annotations

import hashlib

from common.errors import BadInput
from eval.benchmarks import Question

FREE = "free"
FREE_FORMAT = 'End with a line "Final answer: ..." giving the answer in a few words.'


def check_question(text: object, max_chars: int, *, field: str = "question") -> str:
    if not isinstance(text, str):
        raise BadInput(f"{field} must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise BadInput(f"{field} is empty")
    if len(text) > max_chars:
        raise BadInput(f"{field} is {len(text)} characters long; the limit is {max_chars}")
    return text


def check_options(options: object) -> tuple[str, ...]:
    if options is None:
        return ()
    if isinstance(options, str) or not isinstance(options, list | tuple):
        raise BadInput(f"options must be a list of strings, got {type(options).__name__}")
    if len(options) > 10:
        raise BadInput(f"at most 10 options (A-J) are supported, got {len(options)}")
    out = []
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise BadInput(f"options[{i}] must be a non-empty string")
        out.append(option.strip())
    if len(out) == 1:
        raise BadInput("options needs at least two choices")
    return tuple(out)


def free_question(text: str, options: tuple[str, ...] = ()) -> Question:
    """Wrap a user's question; its id is a digest of the text so caches can key on it."""
    digest = hashlib.sha256(("\n".join((text, *options))).encode()).hexdigest()[:16]
    return Question(id=f"q-{digest}", benchmark=FREE, text=text, options=options, answer="")
