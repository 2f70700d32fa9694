"""The request's span: every ``/v1`` request is one server span (``common.tracing``), continuing
the caller's trace when it sends a W3C ``traceparent`` header, and its response carries the
trace in a ``traceresponse`` header (``00-<trace id>-<span id>-<flags>``, the W3C Trace Context
draft's response header). The probes, ``/metrics`` and the live page's polling are not traced:
they would bury the work in noise. While nothing traces this is one check per request."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import tracing

TRACED = ("/v1/",)
"""The paths whose requests are traced."""


class Traced:
    """A plain ASGI middleware (it leaves streaming and disconnects alone)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TRACED) or tracing.tracer() is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import StatusCode

        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        method = scope["method"]
        asked = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope.get("scheme", "http")}
        with tracing.span(method, asked, parent=extract(headers), server=True) as span:
            status = [500]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    header = tracing.traceresponse(span)
                    if header is not None:
                        message = {
                            **message,
                            "headers": [*message.get("headers", ()), (b"traceresponse", header.encode())],
                        }
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if span is not None:
                    if route is not None:
                        span.update_name(f"{method} {route}")
                    tracing.note(span, {"http.route": route, "http.response.status_code": status[0]})
                    if status[0] >= 500:
                        span.set_status(StatusCode.ERROR)


__all__ = ["TRACED", "Traced"]
