"""The FastAPI app: ``create_app(settings)``. State is made in the lifespan; routes are thin.

Routes: ``POST /v1/answer``, ``POST /v1/answer/batch``, ``POST /v1/chat/completions`` and
``GET /v1/models`` (OpenAI-compatible, ``orchestrator.service.chat``), batch jobs under
``/v1/batches`` (``orchestrator.service.batches``), ``GET /v1/usage`` (the caller's key's use,
``orchestrator.service.usage``), ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, and the live
page under ``/ui`` (``orchestrator.service.ui``). Each ``/v1`` request is a span when something
traces (``orchestrator.service.traced``). Every route but ``/healthz`` (the liveness probe, which
says nothing but "ok") needs an API key when keys are configured and counts against the rate
limit (``orchestrator.service.guard``; the live page's data and assets need the key but spend no
request). Every error is one JSON body, from the table in ``orchestrator.remote.errors``; its
message is shown without the server's paths, hosts or ports (``orchestrator.service.redact``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import tracing
from common.errors import BudgetExceeded, CoeError, Overloaded, RateLimited, TooLarge, Unauthorized
from orchestrator.pools.settings import ServiceSettings, load_settings, project_version, service_settings_from_env
from orchestrator.remote.errors import INTERNAL, INVALID_JSON, status_of
from orchestrator.remote.wire import ErrorBody, ErrorResponse
from orchestrator.service import answers, batches, chat, ui, usage
from orchestrator.service.answers import ClientGone
from orchestrator.service.guard import guard
from orchestrator.service.live import ANSWERING
from orchestrator.service.state import Service
from orchestrator.service.traced import Traced

log = logging.getLogger(__name__)


def create_app(settings: ServiceSettings | None = None, *, service: Service | None = None) -> FastAPI:
    """The service's app. ``service`` replaces the one the lifespan would make (tests pass one
    whose orchestrator has fake engines)."""
    settings = settings or ServiceSettings(core=load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = service or Service(settings)
        await run_in_threadpool(state.start)
        app.state.service = state
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(title="symbolic-coe", version=project_version(), lifespan=lifespan)
    # the last added runs first: the body limit inside the measurement, so a 413 is counted
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_Measured)
    app.add_middleware(Traced)  # outermost: the request's span holds everything else
    _handle_errors(app)
    protected = [Depends(guard)]
    app.include_router(answers.router, dependencies=protected)
    app.include_router(chat.router, dependencies=protected)
    app.include_router(batches.router, dependencies=protected)
    app.include_router(usage.router, dependencies=protected)
    app.include_router(ui.router)  # each of its routes has its own guard (its data spends no rate limit)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", dependencies=protected)
    async def readyz(request: Request) -> JSONResponse:
        """Ready: the dispatcher runs, every expert is loaded or loadable, the store is writable."""
        ready, details = await run_in_threadpool(request.app.state.service.readiness)
        if ready:
            return JSONResponse({"status": "ready", **details})
        problems = "; ".join(f"{k}: {v}" for k, v in details.get("problems", {}).items())
        body = _error_body(f"not ready: {problems}", "unavailable")
        return JSONResponse({**body, **details}, status_code=503)

    @app.get("/metrics", dependencies=protected)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (text format)."""
        return Response(generate_latest(request.app.state.service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of ``coe serve --workers N`` (settings from the environment;
    traces exported as the ``OTEL_*`` variables say, ``common.tracing.configure``)."""
    tracing.configure()
    return create_app(service_settings_from_env())


# -- errors ------------------------------------------------------------------------------------


def _error_body(message: str, kind: str, param: str | None = None, resets_at: str | None = None) -> dict[str, object]:
    body = ErrorBody(message=message, type=kind, param=param, resets_at=resets_at)
    unused = {"error": {"resets_at"}} if resets_at is None else None  # only a spent budget has it
    return ErrorResponse(error=body).model_dump(mode="json", exclude=unused)


def _union_branch(part: object) -> bool:
    """Whether a part of a validation error's location names a branch of a union (``str``, a
    model's class), not a field: the body's fields are lower-case."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or part[:1].isupper())


def error_response(exc: CoeError, scope: Scope | None = None) -> JSONResponse:
    """The JSON response of one of the project's errors (the table decides the status); the
    error's type is left in ``scope`` for the metrics, and its message is redacted by the
    service's redactor (found through ``scope``; no scope, no service: the message as it is)."""
    status, kind = status_of(exc)
    message = str(exc)
    if scope is not None:
        scope["coe_error"] = kind
        service = getattr(scope["app"].state, "service", None) if "app" in scope else None
        if service is not None:
            message = service.redact.shown(message, f"{status} {kind}") or message
    headers = {}
    if isinstance(exc, Unauthorized):  # on the live page, the challenge makes a browser ask for the key
        page = scope is not None and str(scope.get("path", "")).startswith("/ui")
        headers["WWW-Authenticate"] = 'Basic realm="symbolic-coe", charset="UTF-8"' if page else "Bearer"
    if isinstance(exc, (RateLimited, Overloaded)) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    resets_at = None
    if isinstance(exc, BudgetExceeded) and exc.resets_at is not None:
        resets_at = datetime.fromtimestamp(exc.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _error_body(message, kind, exc.param, resets_at)
    return JSONResponse(body, status_code=_openai_status(scope, status), headers=headers)


def _openai_status(scope: Scope | None, status: int) -> int:
    """The OpenAI-compatible chat route answers a request it cannot take as OpenAI's API does:
    400, whatever is wrong with it (the body's ``type`` still says what: bad_input, too_large,
    unsupported)."""
    chat = scope is not None and str(scope.get("path", "")).startswith("/v1/chat/")
    return 400 if chat and status in (413, 422) else status


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(CoeError)
    async def coe_error(request: Request, exc: CoeError) -> JSONResponse:
        return error_response(exc, request.scope)

    @app.exception_handler(ClientGone)
    async def gone(request: Request, exc: ClientGone) -> Response:
        request.scope["coe_error"] = "client_gone"
        return Response(status_code=499)  # nobody reads it: the status is for the metrics and the log

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # a value of the wrong type for one branch of a union says least: a broken limit comes first
        errors = sorted(exc.errors(), key=lambda e: str(e.get("type", "")).endswith("_type"))
        first = errors[0] if errors else {}
        request.scope["coe_error"] = "bad_input"
        if first.get("type") == "json_invalid":
            request.scope["coe_error"] = INVALID_JSON[1]
            return JSONResponse(_error_body("the body is not valid JSON", INVALID_JSON[1]), status_code=INVALID_JSON[0])
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body" and not _union_branch(p)) or "body"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return JSONResponse(_error_body(message, "bad_input", where), status_code=_openai_status(request.scope, 422))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        kind = request.scope["coe_error"] = kinds.get(exc.status_code, "http_error")
        body = _error_body(str(exc.detail), kind)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        request.scope["coe_error"] = INTERNAL[1]
        return JSONResponse(_error_body("internal error", INTERNAL[1]), status_code=INTERNAL[0])


# -- middleware (plain ASGI: they leave streaming and disconnects alone) --------------------------


class _BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413 before any route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:  # read the whole body (at most max_bytes) before the app sees it
            message = await receive()
            if message["type"] != "http.request":  # the client went away while sending
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = TooLarge(
            f"the body is over the limit of {self.max_bytes} bytes (max_body_bytes)", param="max_body_bytes"
        )
        await error_response(error, scope)(scope, receive, send)


class _Measured:
    """Counts every request by route and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            scope.setdefault("coe_error", INTERNAL[1])  # the server's error middleware answers it, outside
            raise
        finally:
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            if service is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                seconds = time.perf_counter() - started
                service.metrics.requests.labels(route, str(status[0])).inc()
                service.metrics.latency.labels(route).observe(seconds)
                if route.startswith("/v1/") or route in ANSWERING:  # the work, not the probes or the page
                    service.live.request(route, status[0], seconds)
                if status[0] >= 400:
                    service.metrics.errors.labels(scope.get("coe_error", f"http_{status[0]}")).inc()


__all__ = ["app_from_env", "create_app", "error_response"]
