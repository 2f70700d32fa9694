"""Registry helper: unknown names get an error that suggests the closest known one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from common.errors import NotFound


def unknown_name(kind: str, name: str, known: Iterable[str]) -> NotFound:
    """Build the error for an unknown ``name`` of ``kind``, suggesting the closest match."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known) or 'none'}"
    return NotFound(f"unknown {kind} {name!r}{hint}")
