"""The viewer's app: ``create_app(settings)``, a FastAPI app of its own (``coe view`` serves it
with uvicorn). One page (``static/``: HTML, CSS and plain JavaScript shipped in the package;
nothing is fetched from anywhere else) over a JSON API that pages and filters on the server:

    GET /api/runs                                the runs
    GET /api/runs/{run}                          one run: how it was made, its summary, the frontier
    GET /api/runs/{run}/categories               per category, per method: experts and cost per answer
    GET /api/runs/{run}/questions?method=&category=&outcome=&disagree=&escalated=&skipped=&search=
                                 &offset=&limit=  one page of the question browser
    GET /api/runs/{run}/questions/{position}     one question in full (read from disk at its offset)
    GET /api/compare?a=&b=&method=&change=&differ=&category=&search=&offset=&limit=
                                                 two runs question by question

Every error is ``{"error": {"message", "type"}}`` with the status of ``orchestrator.remote.errors``.
Requests naming another host than the viewer's own are refused (a web page elsewhere cannot
read runs through a rebound DNS name).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from common.errors import CoeError
from eval.results import declares_costs
from orchestrator.pools.settings import project_version
from orchestrator.remote.errors import status_of
from orchestrator.view.detail import question_detail
from orchestrator.view.index import Query as QuestionQuery
from orchestrator.view.overview import category_costs, run_overview
from orchestrator.view.pairs import Pairings, PairQuery, select_pairs
from orchestrator.view.runs import Catalogue

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("orchestrator.view") / "static"))  # shipped in the package
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ViewSettings(BaseModel):
    """What ``coe view`` serves, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs: tuple[Path, ...] = Field(..., min_length=1, description="Run folders, or folders of run folders.")
    host: str = Field("127.0.0.1", description="Address to listen on (loopback unless told otherwise).")
    port: int = Field(8765, ge=1, le=65535, description="Port to listen on.")
    warm: bool = Field(True, description="Index every run in the background once the app starts.")


def create_app(settings: ViewSettings, catalogue: Catalogue | None = None) -> FastAPI:
    """The viewer's app over ``settings.runs`` (``catalogue``: the runs already opened, as the
    command does to report a bad folder before it binds its port)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = catalogue if catalogue is not None else await run_in_threadpool(Catalogue.open, settings.runs)
        app.state.catalogue = opened
        app.state.pairings = Pairings()
        if settings.warm:
            for run in opened.runs.values():
                run.warm()
        yield

    app = FastAPI(title="coe view", version=project_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    hosts = sorted({*LOOPBACK_NAMES, settings.host, f"[{settings.host}]"})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.middleware("http")
    async def secure_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(CoeError)
    async def coe_error(request: Request, exc: CoeError) -> JSONResponse:
        status, kind = status_of(exc)
        return _error(status, kind, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _error(422, "bad_input", f"{where}: {first.get('msg', 'invalid')}")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/runs")
    async def runs(request: Request) -> dict[str, Any]:
        return {"runs": [run.headline() for run in _catalogue(request).runs.values()]}

    @app.get("/api/runs/{run_id}")
    async def run(request: Request, run_id: str) -> dict[str, Any]:
        return await run_in_threadpool(run_overview, _catalogue(request).run(run_id))

    @app.get("/api/runs/{run_id}/categories")
    async def categories(request: Request, run_id: str) -> dict[str, Any]:
        one = _catalogue(request).run(run_id)
        index = await run_in_threadpool(one.index)
        declared = (await run_in_threadpool(one.summary))[0].costs_declared
        return await run_in_threadpool(category_costs, index, declared)

    @app.get("/api/runs/{run_id}/questions")
    async def questions(request: Request, run_id: str, query: Annotated[QuestionQuery, Query()]) -> dict[str, Any]:
        index = await run_in_threadpool(_catalogue(request).run(run_id).index)
        method, rows, total = await run_in_threadpool(index.select, query)
        return {
            "method": method,
            "total": total,
            "offset": query.offset,
            "limit": query.limit,
            "answers": len(index.rows),
            "rows": [
                {
                    "position": r.position,
                    "question_id": r.question_id,
                    "sample": r.sample,
                    "category": r.category,
                    "gold": r.gold,
                    "experts_answered": r.experts,
                    **_slots(r.methods[method]),
                }
                for r in rows
            ],
        }

    @app.get("/api/runs/{run_id}/questions/{position}")
    async def question(request: Request, run_id: str, position: int) -> dict[str, Any]:
        one = _catalogue(request).run(run_id)
        index = await run_in_threadpool(one.index)
        result = await run_in_threadpool(index.record, position)
        return {
            **question_detail(result, index.judge, index.methods, position),
            "costs_declared": declares_costs(one.info.cost_unit),
        }

    @app.get("/api/compare")
    async def compare(request: Request, query: Annotated[PairQuery, Query()]) -> dict[str, Any]:
        catalogue = _catalogue(request)
        a, b = catalogue.run(query.a), catalogue.run(query.b)
        pairing = await run_in_threadpool(request.app.state.pairings.get, a, b, query.method)
        rows, total = await run_in_threadpool(select_pairs, pairing, query)
        return {
            "a": a.headline(),
            "b": b.headline(),
            "comparison": pairing.comparison.model_dump(mode="json"),
            "total": total,
            "offset": query.offset,
            "limit": query.limit,
            "rows": [_slots(r) for r in rows],
        }

    return app


def _catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


def _slots(row: Any) -> dict[str, Any]:
    """A row (a dataclass) as JSON's object, shallowly."""
    return {f.name: getattr(row, f.name) for f in fields(row)}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": " ".join(message.split()), "type": kind}}, status_code=status)
