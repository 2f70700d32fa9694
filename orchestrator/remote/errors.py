"""The one table from the project's error tree to HTTP: a status and an error ``type`` per class.

Every error the service returns has the body ``{"error": {"message", "type", "param", "code"}}``
(OpenAI's shape, so its client reads it). The most specific class in the table wins; anything
outside the tree is a 500 ``internal_error`` whose details stay in the server's log.
The SDK's ``Client`` reads the table backwards to raise the same class the service caught.
"""

from __future__ import annotations

from common.errors import (
    BadInput,
    BudgetExceeded,
    CoeError,
    ConfigError,
    Conflict,
    EndpointError,
    EngineError,
    EngineLoadError,
    EngineTimeout,
    GenerationFailed,
    NotFound,
    Overloaded,
    RateLimited,
    ReplayMiss,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
)

ERROR_TABLE: tuple[tuple[type[CoeError], int, str], ...] = (
    # most specific first
    (TooLarge, 413, "too_large"),
    (Unsupported, 400, "unsupported"),
    (BadInput, 422, "bad_input"),
    (Unauthorized, 401, "unauthorized"),
    (BudgetExceeded, 429, "budget_exceeded"),
    (RateLimited, 429, "rate_limited"),
    (Overloaded, 503, "overloaded"),
    (Unavailable, 503, "unavailable"),
    (ConfigError, 500, "config_error"),
    (ReplayMiss, 404, "replay_miss"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (EngineLoadError, 503, "engine_load_error"),
    (EngineTimeout, 504, "engine_timeout"),
    (EndpointError, 502, "endpoint_error"),
    (GenerationFailed, 502, "generation_failed"),
    (EngineError, 502, "engine_error"),
    (CoeError, 500, "error"),
)
"""(class, HTTP status, error type) for every class of the tree."""

INVALID_JSON = (400, "invalid_json")
"""A body that is not JSON at all (FastAPI reports it as a validation error; we do not)."""

INTERNAL = (500, "internal_error")
"""Anything outside the tree: a bug. The client learns nothing more than this."""


def status_of(exc: CoeError) -> tuple[int, str]:
    """The status and error type of one of the project's errors."""
    for cls, status, kind in ERROR_TABLE:
        if isinstance(exc, cls):
            return status, kind
    return INTERNAL


def error_class(kind: str) -> type[CoeError]:
    """The class an error ``type`` stands for (the client raises it); CoeError when unknown."""
    for cls, _, name in ERROR_TABLE:
        if name == kind:
            return cls
    if kind == INVALID_JSON[1]:
        return BadInput
    return CoeError


__all__ = ["ERROR_TABLE", "INTERNAL", "INVALID_JSON", "error_class", "status_of"]
