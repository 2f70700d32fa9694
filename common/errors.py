"""The project's one error tree.

    CoeError                      every error this project raises on purpose
    ├── BadInput                  a caller gave something unusable (empty, too long, wrong type)
    │   ├── TooLarge              a body or question over one of the service's size limits
    │   └── Unsupported           asks for what this project does not do (images, tools, a response format)
    ├── Unauthorized              no API key, or one the service does not know
    ├── RateLimited               a key asked more often than its limit allows
    │   └── BudgetExceeded        a key spent its budget (tokens or cost per day or month)
    ├── Unavailable               the service cannot take this work now (starting, stopping, a store down)
    │   └── Overloaded            its queue is full, or the request waited past its deadline
    ├── ConfigError               a settings or pool file is malformed (names file and field)
    ├── NotFound                  a named thing does not exist (expert, policy, data file)
    │   └── ReplayMiss            no recorded answer for (model, question id)
    ├── Conflict                  the record is not in a state that allows this (a batch job not finished)
    └── EngineError               a model engine failed
        ├── EngineLoadError       the model could not be loaded or converted
        ├── EndpointError         an HTTP endpoint is dead, wrong, or answered badly
        ├── EngineTimeout         a generation took longer than allowed
        └── GenerationFailed      a request failed after its retries

Outside errors (httpx, vLLM, sqlite, pydantic, OS) are converted at the boundary with
``raise ... from exc``. Every message is one line that names what is wrong; a pydantic
ValidationError becomes ``config_error(exc, where)``: "<where>: <field>: <problem>".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class CoeError(Exception):
    """Base of every error raised on purpose by symbolic-coe. ``param`` names the field or limit
    at fault when there is one (the service reports it beside the message)."""

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param

    def __str__(self) -> str:  # keep every message to one line
        return " ".join(str(self.args[0] if self.args else "").split())


class BadInput(CoeError, ValueError):
    """The caller's input cannot be used as given."""


class TooLarge(BadInput):
    """A request body or a question is over one of the service's size limits."""


class Unsupported(BadInput):
    """The request asks for something this project does not do: content parts other than text
    (images, audio, files), tools and function calls, a response format other than text."""


class Unauthorized(CoeError):
    """No API key was given, or one the service does not know (the message says no more)."""


class RateLimited(CoeError):
    """A key made more requests in a minute than its limit allows.

    ``retry_after``: seconds until the key may ask again, when known (the service sends it as
    the ``Retry-After`` header and the client reads it back).
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class BudgetExceeded(RateLimited):
    """A key has spent a budget of its own (tokens or cost per day or month); ``param`` names
    the limit, ``retry_after`` the seconds until its window resets and ``resets_at`` that time
    (seconds since the epoch)."""

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        param: str | None = None,
        resets_at: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, param=param)
        self.resets_at = resets_at


class Unavailable(CoeError):
    """The service cannot take this work now: it is starting or stopping, or a store is down."""


class Overloaded(Unavailable):
    """The service has more work than it takes: its queue is full, or the request waited longer
    than its deadline and was never run. ``retry_after`` as ``RateLimited``'s."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class ConfigError(CoeError, ValueError):
    """A settings object or a pool file is malformed."""


class NotFound(CoeError, LookupError):
    """A named expert, policy, file or record does not exist."""


class ReplayMiss(NotFound):
    """The replay recordings hold no answer for this model and question."""


class Conflict(CoeError):
    """The record asked about is not in a state that allows this request (e.g. the results of a
    batch job that has not finished, or cancelling one that has)."""


class EngineError(CoeError, RuntimeError):
    """A model engine failed to load or to generate."""


class EngineLoadError(EngineError):
    """A model could not be prepared or loaded."""


class EndpointError(EngineError):
    """An HTTP endpoint could not be reached or answered with an error."""


class EngineTimeout(EngineError, TimeoutError):
    """A generation exceeded its time limit."""


class GenerationFailed(EngineError):
    """A request still failed after its retries."""


def field_path(loc: Sequence[object], skip: Collection[str] = ()) -> str:
    """A pydantic error location as a reader writes it: ``models[1].source.kind``.

    ``skip`` names location parts that are not fields (e.g. the tags pydantic adds for the
    branch of a discriminated union).
    """
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
        elif str(item) not in skip:
            parts.append(str(item))
    return ".".join(parts)


def config_error(
    exc: ValidationError,
    where: str,
    *,
    skip: Collection[str] = (),
    describe: Callable[[str], str] | None = None,
) -> ConfigError:
    """The one-line ConfigError ``<where>: <field>: <problem>`` for a pydantic ValidationError.

    The first error is named (a check on the whole object has no field); the count of the
    others follows. ``describe`` may add to the
    field's name (e.g. the environment variable a setting came from). Raise it ``from exc``.
    """
    errors = exc.errors()
    if not errors:
        return ConfigError(f"{where}: {exc}")
    first = errors[0]
    field = field_path(first["loc"], skip)
    if field and describe is not None:
        field = describe(field)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return ConfigError(f"{where}: {field + ': ' if field else ''}{first['msg']}{more}")
