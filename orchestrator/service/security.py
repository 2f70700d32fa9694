"""API keys and per-key rate limits for ``coe serve``.

Keys are kept only as SHA-256 digests (``sha256:<hex>``): a key file may hold the digests, or
plain keys that are hashed as the file is read and not kept. A presented key is compared with
every stored digest in constant time. Each key is known by a short id (the first 12 hex digits
of its digest), safe to put in logs, metrics and rate-limit buckets.

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
from collections.abc import Callable, Iterable
from pathlib import Path

from common.errors import ConfigError, RateLimited, Unauthorized

PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
KEY_ID_CHARS = 12
"""Hex digits of a key's digest that name it."""

WRONG_KEY = "missing or wrong API key"


def hash_key(key: str) -> str:
    """A key's stored form: ``sha256:<64 hex digits>``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    """The keys a service accepts, as digests (see ``hash_key``)."""

    def __init__(self, hashes: Iterable[str]) -> None:
        stored: dict[str, None] = {}
        for i, digest in enumerate(hashes):
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise ConfigError(f"API key hash {i} is not 'sha256:' and 64 lowercase hex digits")
            stored[digest] = None
        if not stored:
            raise ConfigError("no API keys given: the service would refuse everyone")
        self._digests = tuple(digest.encode("ascii") for digest in stored)

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
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith(PREFIX):
                digest = PREFIX + line[len(PREFIX) :].lower()
                if not _DIGEST.fullmatch(digest):
                    raise ConfigError(
                        f"{path}:{number}: a '{PREFIX}' line needs 64 hex digits after the prefix"
                        f" ({len(line) - len(PREFIX)} characters found)"
                    )
                hashes.append(digest)
            elif any(c.isspace() for c in line):
                raise ConfigError(f"{path}:{number}: a key cannot contain spaces (one key per line)")
            else:
                hashes.append(hash_key(line))
        if not hashes:
            raise ConfigError(f"API key file {path} holds no keys (one per line: a key or sha256:<hex>)")
        return cls(hashes)

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
        return digest[len(PREFIX) : len(PREFIX) + KEY_ID_CHARS]


class RateLimiter:
    """At most ``per_minute`` requests a minute per key id: a token bucket per key.

    A key's bucket holds up to ``per_minute`` tokens, starts full and refills continuously; a
    request spends one. A key idle for a minute has a full bucket again and is forgotten, so the
    limiter holds only the keys seen in the last minute. Thread-safe.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
            raise ConfigError(f"rate limit must be a whole number of requests per minute from 1, got {per_minute!r}")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens earned per second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when), oldest first

    def __len__(self) -> int:
        """Keys remembered now."""
        return len(self._buckets)

    def take(self, key_id: str) -> None:
        """Spend one request of ``key_id``'s allowance, or raise ``RateLimited`` with ``retry_after``."""
        with self._lock:
            now = self._clock()
            self._forget_idle(now)
            tokens, then = self._buckets.pop(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + max(0.0, now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return
            self._buckets[key_id] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
        raise RateLimited(
            f"rate limit: {self.per_minute} requests per minute per key",
            retry_after=wait,
            param="rate_limit_per_minute",
        )

    def _forget_idle(self, now: float) -> None:
        """Drop keys untouched for a minute: their buckets are full, as a new key's is."""
        while self._buckets:
            key, (_, then) = next(iter(self._buckets.items()))
            if now - then < 60.0:
                return
            del self._buckets[key]


__all__ = ["KEY_ID_CHARS", "PREFIX", "WRONG_KEY", "ApiKeys", "RateLimiter", "hash_key"]
