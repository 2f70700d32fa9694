"""Checks on what callers hand the SDK, CLI and (later) REST layer: one-line errors."""

from __future__ import annotations

import unicodedata
from typing import get_args

from common.errors import BadInput
from common.query import MAX_OPTIONS, Query
from common.vocabulary import MAX_NEW_TOKENS, Aggregation, ScorerKind

FREE_FORMAT = 'End with a line "Final answer: ..." giving the answer in a few words.'


def check_question(text: object, max_chars: int, *, field: str = "question", controls: bool = True) -> str:
    """``text`` stripped, or BadInput naming what is wrong. ``controls``: refuse control characters
    (typed or sent text; benchmark items and ``Query`` records are data and keep theirs)."""
    if not isinstance(text, str):
        raise BadInput(f"{field} must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise BadInput(f"{field} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes from the command line arrive as lone surrogates
        raise BadInput(f"{field} is not valid UTF-8 text") from None
    if len(text) > max_chars:
        raise BadInput(f"{field} is {len(text)} characters long; the limit is {max_chars}")
    found = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t"})
    if controls and found:
        raise BadInput(f"{field} holds control characters ({', '.join(found[:3])}); send plain text")
    return text


def check_k(k: object, default: int, experts: int) -> int:
    """Experts per question: an int from 1 to the pool's number of experts (``default`` when None)."""
    if k is None:
        return min(default, experts)
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadInput(f"k must be an integer, got {type(k).__name__}")
    if not 1 <= k <= experts:
        raise BadInput(f"k must be from 1 to {experts} (the pool's experts), got {k}")
    return k


def check_policy(policy: object, default: str) -> str:
    if policy is None:
        return default
    if not isinstance(policy, str) or not policy.strip():
        raise BadInput(f"policy must be a policy name, got {policy!r}")
    return policy


def check_answering(aggregation: object, max_tokens: object) -> None:
    """How the answer is written: ``synthesis`` or ``majority``, and at most ``MAX_NEW_TOKENS``."""
    if aggregation not in get_args(Aggregation):
        raise BadInput(f"aggregation must be 'synthesis' or 'majority', got {aggregation!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise BadInput(f"max_tokens must be an integer, got {type(max_tokens).__name__}")
    if max_tokens is not None and not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise BadInput(f"max_tokens must be from 1 to {MAX_NEW_TOKENS}, got {max_tokens}")


def check_scorer(scorer: object) -> None:
    if scorer not in get_args(ScorerKind):
        raise BadInput(f"scorer must be 'classifier' or 'keywords', got {scorer!r}")


def check_options(options: object, *, field: str = "options", controls: bool = True) -> tuple[str, ...]:
    if options is None:
        return ()
    if isinstance(options, str) or not isinstance(options, list | tuple):
        raise BadInput(f"{field} must be a list of strings, got {type(options).__name__}")
    if len(options) > MAX_OPTIONS:
        raise BadInput(f"at most {MAX_OPTIONS} {field} (A-J) are supported, got {len(options)}")
    out = []
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise BadInput(f"{field}[{i}] must be a non-empty string")
        out.append(check_question(option, 10_000, field=f"{field}[{i}]", controls=controls))
    if len(out) == 1:
        raise BadInput(f"{field} needs at least two choices")
    return tuple(out)


def as_query(item: object, max_chars: int, *, options: object = None, field: str = "question") -> Query:
    """A checked ``Query`` from a plain string (with ``options``) or a ``Query`` (and its subclasses,
    such as benchmark items, which are kept as they are)."""
    if isinstance(item, Query):
        if options is not None:
            raise BadInput(f"{field}: give options inside the Query, not beside it")
        check_question(item.text, max_chars, field=field, controls=False)
        check_options(item.options or None, field=f"{field}.options", controls=False)
        return item
    if not isinstance(item, str):
        raise BadInput(f"{field} must be a string, got {type(item).__name__} (or give a Query)")
    return Query(text=check_question(item, max_chars, field=field), options=check_options(options))
