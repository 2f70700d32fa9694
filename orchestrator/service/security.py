"""API keys, their limits, and per-key rate limits for ``coe serve``.

Keys are kept only as SHA-256 digests (``sha256:<hex>``): a key file may hold the digests, or
plain keys that are hashed as the file is read and not kept. A presented key is compared with
every stored digest in constant time. Each key is known by a short id (the first 12 hex digits
of its digest), safe to put in logs, metrics and rate-limit buckets.

A key's line may go on with its limits, ``name=value`` separated by spaces (``KeyLimits``)::

    sk-team-a  tokens_per_day=200000 cost_per_month=50 requests_per_minute=30
    sha256:4f3c...  tokens_per_month=5000000

The rate limit is a token bucket per key: a key may spend ``per_minute`` requests at once, and
earns them back at ``per_minute`` a minute (one every ``60 / per_minute`` seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import ConfigError, RateLimited, Unauthorized, config_error

PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
KEY_ID_CHARS = 12
"""Hex digits of a key's digest that name it."""

WRONG_KEY = "missing or wrong API key"


class KeyLimits(BaseModel):
    """What one key may spend: budgets per UTC calendar day and month, and a rate. A limit left
    out is no limit. Cost is in the pool's unit (what ``trace.cost`` counts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_per_day: int | None = Field(None, ge=1, description="Tokens read and written per UTC day.")
    tokens_per_month: int | None = Field(None, ge=1, description="Tokens read and written per UTC month.")
    cost_per_day: float | None = Field(None, gt=0, description="Cost per UTC day, in the pool's unit.")
    cost_per_month: float | None = Field(None, gt=0, description="Cost per UTC month, in the pool's unit.")
    requests_per_minute: int | None = Field(
        None, ge=1, le=1_000_000, description="This key's rate limit (instead of the service's --rate-limit)."
    )

    @property
    def budgets(self) -> dict[str, float]:
        """The budgets set: limit name -> amount (the rate is not a budget)."""
        named = {"tokens_per_day", "tokens_per_month", "cost_per_day", "cost_per_month"}
        return {name: value for name, value in self.model_dump().items() if name in named and value is not None}


NO_LIMITS = KeyLimits()


def _limits(words: list[str], where: str) -> KeyLimits:
    """The limits written after a key on one line of a key file."""
    values: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name or not value:
            raise ConfigError(
                f"{where}: after the key only limits (name=value) may follow; {word[:40]!r} is not one"
                " (a key cannot contain spaces)"
            )
        if name in values:
            raise ConfigError(f"{where}: limit {name!r} is given twice")
        values[name] = value
    try:
        return KeyLimits.model_validate(values)
    except ValidationError as exc:
        known = ", ".join(KeyLimits.model_fields)
        raise config_error(exc, where, describe=lambda field: f"{field} (limits: {known})") from exc


def hash_key(key: str) -> str:
    """A key's stored form: ``sha256:<64 hex digits>``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(digest: str) -> str:
    """A key's short id: the first ``KEY_ID_CHARS`` hex digits of its digest."""
    return digest[len(PREFIX) : len(PREFIX) + KEY_ID_CHARS]


class ApiKeys:
    """The keys a service accepts, as digests (see ``hash_key``), and each key's limits (by its
    digest; a key without limits has none)."""

    def __init__(self, hashes: Iterable[str], limits: Mapping[str, KeyLimits] | None = None) -> None:
        stored: dict[str, None] = {}
        for i, digest in enumerate(hashes):
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise ConfigError(f"API key hash {i} is not 'sha256:' and 64 lowercase hex digits")
            stored[digest] = None
        if not stored:
            raise ConfigError("no API keys given: the service would refuse everyone")
        self._digests = tuple(digest.encode("ascii") for digest in stored)
        self._limits = {key_id(d): v for d, v in (limits or {}).items() if d in stored and v != NO_LIMITS}

    def limits(self, key: str | None) -> KeyLimits:
        """The limits of the key with id ``key`` (none for an unknown id, or None)."""
        return self._limits.get(key, NO_LIMITS) if key is not None else NO_LIMITS

    @property
    def rated(self) -> bool:
        """Whether any key has a rate limit of its own."""
        return any(v.requests_per_minute is not None for v in self._limits.values())

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the digests
        return f"ApiKeys({len(self)} keys)"

    @classmethod
    def from_file(cls, path: str | Path) -> ApiKeys:
        """Keys from a file, one per line: ``sha256:<64 hex>`` kept as is, or a plain key hashed
        now. Blank lines and lines starting with ``#`` are skipped."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"API key file {path} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"API key file {path} cannot be read: {exc}") from exc
        hashes = []
        limits: dict[str, KeyLimits] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            line, where = words[0], f"{path}:{number}"
            if line.lower().startswith(PREFIX):
                digest = PREFIX + line[len(PREFIX) :].lower()
                if not _DIGEST.fullmatch(digest):
                    raise ConfigError(
                        f"{where}: a '{PREFIX}' line needs 64 hex digits after the prefix"
                        f" ({len(line) - len(PREFIX)} characters found)"
                    )
            else:
                digest = hash_key(line)
            given = _limits(words[1:], where)
            if digest in limits and limits[digest] != given:
                raise ConfigError(f"{where}: this key was given before with other limits")
            hashes.append(digest)
            limits[digest] = given
        if not hashes:
            raise ConfigError(f"API key file {path} holds no keys (one per line: a key or sha256:<hex>)")
        return cls(hashes, limits)

    def check(self, presented: str | None) -> str:
        """The presented key's short id, or ``Unauthorized`` when it is missing or unknown.

        The key's digest is compared with every stored one, with no early exit, so the time
        taken says nothing about which key, or how much of one, matched."""
        if not presented:
            raise Unauthorized(WRONG_KEY)
        digest = hash_key(presented)
        wanted = digest.encode("ascii")
        matches = sum(hmac.compare_digest(wanted, stored) for stored in self._digests)
        if not matches:
            raise Unauthorized(WRONG_KEY)
        return key_id(digest)


class RateLimiter:
    """At most ``per_minute`` requests a minute per key id: a token bucket per key.

    A key's bucket holds up to ``per_minute`` tokens (its own rate where ``take`` is given one),
    starts full and refills continuously; a request spends one. A key idle for a minute has a
    full bucket again and is forgotten, so the limiter holds only the keys seen in the last
    minute. ``per_minute`` None: only keys with a rate of their own are limited. Thread-safe.
    """

    def __init__(self, per_minute: int | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute is not None:
            _check_rate(per_minute)
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when), oldest first

    def __len__(self) -> int:
        """Keys remembered now."""
        return len(self._buckets)

    def take(self, key_id: str, per_minute: int | None = None) -> None:
        """Spend one request of ``key_id``'s allowance (``per_minute`` a minute, else the
        limiter's), or raise ``RateLimited`` with ``retry_after``."""
        limit = per_minute if per_minute is not None else self.per_minute
        if limit is None:
            return
        rate = _check_rate(limit) / 60.0  # tokens earned per second
        with self._lock:
            now = self._clock()
            self._forget_idle(now)
            tokens, then = self._buckets.pop(key_id, (float(limit), now))
            tokens = min(float(limit), tokens + max(0.0, now - then) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return
            self._buckets[key_id] = (tokens, now)
            wait = (1.0 - tokens) / rate
        own = per_minute is not None
        raise RateLimited(
            f"rate limit: {limit} requests per minute {'for this key' if own else 'per key'}",
            retry_after=wait,
            param="requests_per_minute" if own else "rate_limit_per_minute",
        )

    def _forget_idle(self, now: float) -> None:
        """Drop keys untouched for a minute: their buckets are full, as a new key's is."""
        while self._buckets:
            key, (_, then) = next(iter(self._buckets.items()))
            if now - then < 60.0:
                return
            del self._buckets[key]


def _check_rate(per_minute: object) -> int:
    if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
        raise ConfigError(f"rate limit must be a whole number of requests per minute from 1, got {per_minute!r}")
    return per_minute


__all__ = [
    "KEY_ID_CHARS",
    "NO_LIMITS",
    "PREFIX",
    "WRONG_KEY",
    "ApiKeys",
    "KeyLimits",
    "RateLimiter",
    "hash_key",
    "key_id",
]
