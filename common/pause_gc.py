"""Bulk steps without CPython's cyclic garbage collector: ``with paused_gc(): ...``.

Routing, answering and scoring a benchmark build millions of small acyclic objects (records,
answers, traces, result rows). Each 700 allocations start a young collection, and every few
hundred thousand surviving objects a full one that walks the whole heap again: on a 12,000
question evaluation that was about 40% of the CPU time, for no garbage (reference counting
frees these objects; they hold no cycles). Inside ``paused_gc`` the collector waits; when the
outermost pause ends it runs again as before (garbage with cycles made meanwhile is collected
then). Pauses nest and may overlap across threads: the collector resumes when the last one
ends, and only if it was enabled when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off cyclic garbage collection for the block (reference counting still frees)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


__all__ = ["paused_gc"]
