"""Who may ask, and how often: the API key check and the rate limit of every route but
``/healthz`` (the ``/v1`` routes, ``/readyz`` and ``/metrics``).

With keys, a request is the key's: it spends the key's rate limit (its own, where the key file
gives it one), and the key's id (never the key) is the request's ``caller``, the owner of the
jobs it makes and the one its budgets and use are counted for. A request with a missing or
wrong key spends its client address's limit before it is refused, so keys cannot be guessed
faster than the limit allows. Without keys every request spends its client address's limit and
its caller is None (everyone's).
"""

from __future__ import annotations

from fastapi import Request

from common.errors import Unauthorized
from orchestrator.service.security import WRONG_KEY


async def guard(request: Request) -> None:
    """Checks the bearer key (when the service has keys) and takes one request from the rate
    limit of the key, or of the client's address when there is no good key."""
    service = request.app.state.service
    address = f"address {request.client.host if request.client is not None else 'unknown'}"
    caller: str | None = None
    if service.keys is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(WRONG_KEY)
            caller = service.keys.check(token.strip())
        except Unauthorized:
            if service.limiter is not None:
                service.limiter.take(address)  # a refused key costs its address one request
            raise
    request.state.caller = caller
    if service.limiter is not None:
        if caller is None:
            service.limiter.take(address)
        else:  # the key's own rate where it has one, else the service's
            service.limiter.take(f"key {caller}", service.keys.limits(caller).requests_per_minute)


def caller_of(request: Request) -> str | None:
    """The id of the key the request came with; None on a service without keys. Only a route
    behind ``guard`` has one (anything else is a bug, and fails)."""
    return request.state.caller


__all__ = ["caller_of", "guard"]
