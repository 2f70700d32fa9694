"""OpenTelemetry spans for the stages of an answer, at no cost when nobody traces.

Library code (the pipeline, the executor, the service) asks this module for spans; it never
configures anything. Whoever runs the process decides: an application that installs its own
tracer provider gets our spans in its traces, and the entry points (``coe serve``, every ``coe``
command) call ``configure()``, which installs the SDK's provider only when the standard
``OTEL_*`` variables ask for an exporter (``OTEL_TRACES_EXPORTER``, or an OTLP endpoint in
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``).

While no provider is installed every helper here is a dictionary look-up and a return: the
OpenTelemetry API is not even imported (``tracer()`` looks in ``sys.modules``, since nobody can
have installed a provider without importing it). Spans carry their attributes under ``coe.*``
(pool, policy, model, role) and token counts under the GenAI conventions' names
(``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``).
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from common.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

NAME = "symbolic-coe"
"""The instrumentation scope of our spans, and the service name when the environment gives none."""

EXPORTERS = ("otlp", "console", "none")
"""What ``OTEL_TRACES_EXPORTER`` may name here."""

Attributes = Mapping[str, Any]
T = TypeVar("T")

_cache: list[Any] = [None, None]  # [provider, its tracer]: one tracer per installed provider
_provided: list[Any] = [None]  # a provider given to ``provide``, used instead of the global one
_ASK = object()


def provide(provider: Any) -> None:
    """Make our spans with ``provider`` (an SDK ``TracerProvider``) instead of the global one;
    None goes back to the global one. For an application that keeps its own provider out of the
    global slot, and for tests (the global provider can be set only once per process)."""
    _provided[0] = provider


def tracer() -> Tracer | None:
    """The tracer of the installed provider, or None while nobody traces."""
    provider = _provided[0]
    if provider is None:
        api = sys.modules.get("opentelemetry.trace")
        if api is None:
            return None
        # the API's global slot, read directly: ``get_tracer_provider()`` also looks in the
        # environment on every call (a few microseconds, dozens of times a request); an API
        # without the slot is asked the public way
        provider = getattr(api, "_TRACER_PROVIDER", _ASK)
        if provider is _ASK:
            provider = api.get_tracer_provider()
        if provider is None or isinstance(provider, api.ProxyTracerProvider):
            return None
    if _cache[0] is not provider:
        _cache[:] = [provider, provider.get_tracer(NAME)]
    return _cache[1]


def _clean(attributes: Attributes | None) -> dict[str, Any]:
    """The attributes OpenTelemetry takes: None values left out, other sequences as tuples."""
    if not attributes:
        return {}
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = tuple(str(v) for v in value)
        out[key] = value
    return out


_NO_SPAN: AbstractContextManager[None] = nullcontext(None)  # reusable: it holds no state


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    parent: Context | None = None,
    links: Sequence[Context | None] = (),
    server: bool = False,
) -> AbstractContextManager[Span | None]:
    """A span around the block, current inside it (so spans made inside are its children); the
    span itself is yielded, or None while nobody traces. ``parent``: a context captured
    elsewhere (``here()``) instead of the current one; ``links``: contexts of other traces this
    work also serves (requests answered in one batch). An exception leaving the block is
    recorded on the span and marks it as an error."""
    found = tracer()
    if found is None:
        return _NO_SPAN
    return _span(found, name, attributes, parent, links, server)


@contextmanager
def _span(
    found: Tracer,
    name: str,
    attributes: Attributes | None,
    parent: Context | None,
    links: Sequence[Context | None],
    server: bool,
) -> Iterator[Span]:
    from opentelemetry import trace

    kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
    linked = [trace.Link(trace.get_current_span(c).get_span_context()) for c in links if c is not None]
    with found.start_as_current_span(
        name, context=parent, kind=kind, attributes=_clean(attributes), links=linked
    ) as made:
        yield made


def start(name: str, attributes: Attributes | None = None) -> Span | None:
    """A child of the current span that is not made current (its owner ends it, from any
    thread: ``end(span)``), or None while nobody traces."""
    found = tracer()
    return None if found is None else found.start_span(name, attributes=_clean(attributes))


def end(made: Span | None, attributes: Attributes | None = None) -> None:
    """End a span from ``start`` (None: nothing to do), after setting ``attributes``."""
    if made is not None:
        note(made, attributes)
        made.end()


def note(made: Span | None, attributes: Attributes | None) -> None:
    """Set attributes on a span (None: nothing to do; None values left out)."""
    if made is not None and attributes:
        made.set_attributes(_clean(attributes))


def here() -> Context | None:
    """The current context, to parent or link spans made elsewhere; None while nobody traces."""
    if tracer() is None:
        return None
    from opentelemetry import context

    return context.get_current()


def link(made: Span | None, to: Span | None) -> None:
    """Let ``made`` point at ``to`` (a span of another trace that did part of its work)."""
    if made is not None and to is not None and made.is_recording():
        made.add_link(to.get_span_context())


def current_span() -> Span | None:
    """The current span, or None while nobody traces (or outside every span)."""
    if tracer() is None:
        return None
    from opentelemetry import trace

    found = trace.get_current_span()
    return found if found.get_span_context().is_valid else None


def trace_id(made: Span | None = None) -> str | None:
    """The trace id (32 hex digits) of ``made`` or of the current span; None while nobody traces."""
    made = made if made is not None else current_span()
    if made is None:
        return None
    found = made.get_span_context()
    return f"{found.trace_id:032x}" if found.is_valid else None


def traceresponse(made: Span | None) -> str | None:
    """The W3C ``traceresponse`` header of a span: ``00-<trace id>-<span id>-<flags>``."""
    if made is None:
        return None
    found = made.get_span_context()
    if not found.is_valid:
        return None
    return f"00-{found.trace_id:032x}-{found.span_id:016x}-{int(found.trace_flags):02x}"


def carried(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """A call of ``fn(*args)`` to run in another thread inside the current context."""
    if tracer() is None:
        return lambda: fn(*args)
    snapshot = contextvars.copy_context()
    return lambda: snapshot.run(fn, *args)


# -- configuration, by entry points only ---------------------------------------------------------


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK's tracer provider when the ``OTEL_*`` variables ask for an exporter;
    True when one was installed. Nothing happens when a provider is already installed (an
    application's, or ``opentelemetry-instrument``'s), when ``OTEL_SDK_DISABLED`` is true, or
    when no exporter is asked for. The exporters read their own variables (endpoint, headers,
    protocol, timeout), the sampler reads ``OTEL_TRACES_SAMPLER``, the resource reads
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (service name ``symbolic-coe`` unless
    they name one). An unknown exporter, or a missing package, is a ``ConfigError``."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not names and endpoint:
        names = ["otlp"]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r}; known here: {', '.join(EXPORTERS)}")
    names = [n for n in names if n != "none"]
    if not names:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "tracing is asked for (OTEL_TRACES_EXPORTER or an OTLP endpoint) but the OpenTelemetry SDK "
            f"is not installed ({exc.name}): pip install 'symbolic-coe[otel]'"
        ) from exc
    # asked once the public way: a provider named by OTEL_PYTHON_TRACER_PROVIDER is installed now
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    named = "OTEL_SERVICE_NAME" in env or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": NAME}))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)
    return True


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    try:
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            return Grpc()
        if protocol.strip() != "http/protobuf":
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported here; use http/protobuf or grpc"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http()
    except ImportError as exc:
        raise ConfigError(
            f"the OTLP exporter for {protocol} is not installed ({exc.name}): pip install 'symbolic-coe[otel]'"
        ) from exc


__all__ = [
    "NAME",
    "carried",
    "configure",
    "current_span",
    "end",
    "here",
    "link",
    "note",
    "provide",
    "span",
    "start",
    "trace_id",
    "traceresponse",
    "tracer",
]
