"""``GET /v1/usage``: what the calling key spent this UTC day and month, and its limits.

A key sees only its own use: the route reads the caller's key id and nothing else. A service
without keys counts no use (404 ``not_found`` says so).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from common.errors import NotFound
from orchestrator.remote.wire import UsageReport
from orchestrator.service.guard import caller_of
from orchestrator.service.state import Service

router = APIRouter(prefix="/v1")


@router.get("/usage")
async def usage(request: Request) -> UsageReport:
    service: Service = request.app.state.service
    caller = caller_of(request)
    if service.tenants is None or caller is None:
        raise NotFound("use is counted per API key, and this service has no keys")
    return await run_in_threadpool(service.tenants.report, caller)


__all__ = ["router"]
