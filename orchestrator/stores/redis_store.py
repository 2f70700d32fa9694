"""The shared generation store: Redis, for several service replicas answering from one cache.

Values are the entries of ``stores.base`` under ``prefix + key``; reads are MGET, writes one
pipelined SET per entry (with PX for expiry). A Redis that cannot be reached raises
``Unavailable`` naming it; redis-py reconnects by itself on the next call, so a Redis that comes
back is used again without making a new store. redis is imported when a store is made, not
when this module is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

from common.errors import ConfigError, Unavailable
from common.requests import Generation
from orchestrator.stores.base import StoreStats, check_ttl, encode_entry, read_entries
from orchestrator.stores.target import redacted

__all__ = ["RedisGenerationStore"]

_CHUNK = 500  # keys per MGET, entries per pipeline
T = TypeVar("T")


class RedisGenerationStore:
    """Generations by request key in the Redis at ``url`` (``redis://`` or ``rediss://``)."""

    def __init__(
        self,
        url: str,
        ttl_s: float | None = None,
        prefix: str = "coe:gen:",
        *,
        connect_timeout_s: float = 2.0,
        timeout_s: float = 10.0,
    ) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.url = url
        self.ttl_s = check_ttl(ttl_s)
        self.prefix = prefix
        self.name = f"redis at {redacted(url)}"
        self.stats = StoreStats()
        self._error: type[Exception] = redis.exceptions.RedisError
        self._unreachable: tuple[type[Exception], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
        )
        try:
            self._client: Any = redis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),  # a dropped connection is tried again
            )
        except ValueError as exc:
            raise ConfigError(f"store {redacted(url)!r} is not a usable Redis URL: {exc}") from exc

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except self._unreachable as exc:
            raise Unavailable(f"{self.name} is unreachable: {exc}") from exc
        except self._error as exc:
            raise Unavailable(f"{self.name} could not {what}: {exc}") from exc

    # -- the protocol ---------------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str | bytes] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            values: list[bytes | None] = self._call(
                "read", partial(self._client.mget, [self.prefix + k for k in chunk])
            )
            found.update({key: value for key, value in zip(chunk, values, strict=True) if value is not None})
        return read_entries(self.name, self.stats, wanted, found)

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        rows = [(key, encode_entry(key, g)) for key, g in entries.items() if g.ok]
        px = max(1, round(self.ttl_s * 1000)) if self.ttl_s is not None else None
        for start in range(0, len(rows), _CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key, value in rows[start : start + _CHUNK]:
                pipe.set(self.prefix + key, value, px=px)
            self._call("write", pipe.execute)
        self.stats.count(written=len(rows))

    def ping(self) -> None:
        self._call("answer PING", self._client.ping)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisGenerationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisGenerationStore({redacted(self.url)!r}, ttl_s={self.ttl_s!r}, prefix={self.prefix!r})"
