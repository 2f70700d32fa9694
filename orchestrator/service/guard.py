"""Who may ask, and how often: the API key check and the rate limit of every route but
``/healthz`` (the ``/v1`` routes, ``/readyz``, ``/metrics`` and the live page, ``/ui``). A key
comes as ``Authorization: Bearer KEY``, or as the password of HTTP Basic (a browser's way: the
live page's 401 asks for it).

With keys, a request is the key's: it spends the key's rate limit (its own, where the key file
gives it one), and the key's id (never the key) is the request's ``caller``, the owner of the
jobs it makes and the one its budgets and use are counted for. A request with a missing or
wrong key spends its client address's limit before it is refused, so keys cannot be guessed
faster than the limit allows. Without keys every request spends its client address's limit and
its caller is None (everyone's).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from common.errors import Unauthorized
from orchestrator.service.security import WRONG_KEY


async def guard(request: Request) -> None:
    """Checks the key (when the service has keys) and takes one request from the rate limit of
    the key, or of the client's address when there is no good key."""
    _admit(request, spend=True)


async def key_guard(request: Request) -> None:
    """``guard`` that spends no request of a good key's limit: for what the live page polls and
    loads (its data, its assets), which costs the service next to nothing. A refused key still
    costs its address one request."""
    _admit(request, spend=False)


def presented_key(authorization: str) -> str | None:
    """The key an ``Authorization`` header presents: ``Bearer KEY``, or HTTP Basic with the key as
    the password (what a browser sends for the live page; the user name is not read)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token or None
    if scheme.lower() == "basic":
        try:
            _, colon, key = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return key if colon and key else None
    return None


def _admit(request: Request, *, spend: bool) -> None:
    service = request.app.state.service
    address = f"address {request.client.host if request.client is not None else 'unknown'}"
    caller: str | None = None
    if service.keys is not None:
        key = presented_key(request.headers.get("authorization", ""))
        try:
            if key is None:
                raise Unauthorized(WRONG_KEY)
            caller = service.keys.check(key)
        except Unauthorized:
            if service.limiter is not None:
                service.limiter.take(address)  # a refused key costs its address one request
            raise
    request.state.caller = caller
    if service.limiter is not None and spend:
        if caller is None:
            service.limiter.take(address)
        else:  # the key's own rate where it has one, else the service's
            service.limiter.take(f"key {caller}", service.keys.limits(caller).requests_per_minute)


def caller_of(request: Request) -> str | None:
    """The id of the key the request came with; None on a service without keys. Only a route
    behind ``guard`` has one (anything else is a bug, and fails)."""
    return request.state.caller


__all__ = ["caller_of", "guard", "key_guard", "presented_key"]
