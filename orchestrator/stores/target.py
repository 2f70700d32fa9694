"""Which store a setting names: a ``redis://``/``rediss://`` URL is Redis, anything else a path
to an SQLite file. Checked without importing redis (settings use it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from common.errors import ConfigError

__all__ = ["DEFAULT_FILE", "redacted", "store_kind", "store_location"]

_REDIS = ("redis", "rediss")

DEFAULT_FILE = "store.sqlite"


def store_location(store: str | None, runs_dir: Path) -> str:
    """The store a setting names: the setting itself, or ``runs_dir/store.sqlite`` when None."""
    return store if store else str(runs_dir / DEFAULT_FILE)


def store_kind(target: str) -> Literal["redis", "sqlite"]:
    """``redis`` for a Redis URL, ``sqlite`` for a file path; ConfigError (one line) for an empty
    value, a URL of another scheme, or a Redis URL without a host or with a bad port or db."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"store must be a redis:// URL or a file path, got {target!r}")
    scheme, sep, _ = target.partition("://")
    if not sep:
        return "sqlite"
    if scheme.lower() not in _REDIS:
        raise ConfigError(
            f"store {redacted(target)!r}: scheme {scheme!r} is not redis:// or rediss:// (or give a path)"
        )
    parts = urlsplit(target)
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise ConfigError(f"store {redacted(target)!r}: {exc}") from exc
    if not parts.hostname:
        raise ConfigError(f"store {redacted(target)!r}: no host")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"store {redacted(target)!r}: the database {db!r} is not a number")
    return "redis"


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (messages and logs never show it)."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    if not sep or "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    shown = f"{user}:***" if user else "***"
    return f"{scheme}://{shown}@{host}{rest[len(authority) :]}"
