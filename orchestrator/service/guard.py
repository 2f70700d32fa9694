"""Who may ask, and how often: the API key check and the rate limit of every ``/v1`` route."""

from __future__ import annotations

from fastapi import Request

from common.errors import Unauthorized


async def guard(request: Request) -> None:
    """Checks the bearer key (when the service has keys) and takes one request from the key's
    rate limit (the client's address stands for the key when there are none)."""
    service = request.app.state.service
    key_id = request.client.host if request.client is not None else "unknown"
    if service.keys is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing or wrong API key")
        key_id = service.keys.check(token.strip())
    if service.limiter is not None:
        service.limiter.take(key_id)
