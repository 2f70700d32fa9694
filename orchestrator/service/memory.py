"""Giving freed memory back to the system between batches, so the service's memory stays flat.

Why the resident memory grew under distinct questions (641 MB to 2.37 GB over 14k questions in
the trial, never coming down) though nothing in Python kept them: glibc's malloc serves a block
of at least ``M_MMAP_THRESHOLD`` (128 KiB at first) with its own mmap, handed back when freed,
but each such free raises the threshold to the block's size (up to 32 MiB); after that, blocks
of those sizes are cut from the heaps of malloc's arenas, and a heap gives memory back only from
its top. The encoder allocates and frees large buffers of ever different sizes (activations of
batches of varied lengths), and it ran them in two new threads per call: each new thread took an
arena in turn, so the fragmentation spread over one arena after another. The encoder now keeps
its threads (``skills.embed``); what is still freed inside the heaps goes back with
``malloc_trim(0)`` after a batch (at most once a second while busy) and once the service has
been idle for a moment (the last responses sent).

Measured on replay-small (policy topk, k=3, majority vote), RSS over 1,000 distinct questions
after the first 300: as it was, +453 MB (memory in use by malloc flat at 201-206 MB, memory free
inside its heaps 431 to 871 MB; tracemalloc saw no growth in Python's objects); a trim per batch
alone, +170 MB; the encoder's threads kept alone, +251 MB; both, -25 MB, and flat to 3,300. A
fixed threshold (``MALLOC_MMAP_THRESHOLD_=131072``) kept it flat too, but every large tensor was
then mapped and faulted in anew: the encoder took 23% more CPU time, against 3% for a trim after
each batch of 32 texts. Where there is no glibc (macOS, musl) ``release`` does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class FreedMemory:
    """``release()`` gives the free pages of malloc's heaps back to the system, at most once every
    ``every_s`` seconds (a trim walks every arena: about 10-25 ms with a 1 GB heap here)."""

    def __init__(self, every_s: float = 1.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._trim = _malloc_trim()
        self._last: float | None = None
        self.released = 0
        """How many trims have run."""

    @property
    def available(self) -> bool:
        """Whether this C library can trim (glibc)."""
        return self._trim is not None

    def release(self, *, now: bool = False) -> None:
        """Trim, unless one ran less than ``every_s`` ago (``now``: regardless)."""
        if self._trim is None:
            return
        moment = self._clock()
        if not now and self._last is not None and moment - self._last < self.every_s:
            return
        self._last = moment
        self._trim(0)
        self.released += 1


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


__all__ = ["FreedMemory"]
