"""The generation cache as the executor sees it: generations by request key, across runs.

The run store keeps one run's checkpoints; the cache keeps any finished generation for any later
run that asks the same thing (``runstore.request_key``: model source, prompting, messages,
question id, effective sampling, and whether log-probabilities were asked for). The executor
consults it before a phase loads anything and again as composed tasks become ready; a hit
resolves its task with no load and no engine call. Implementations (SQLite, Redis) live with
the orchestrator; this is their two-method seam.

A request that asks for a fresh sample (a temperature above 0 and no seed) is never cached:
the same prompt is meant to give a different answer each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from common.requests import Generation, Sampling

__all__ = ["GenerationCache", "cacheable"]


@runtime_checkable
class GenerationCache(Protocol):
    """Finished generations keyed by request key. An unreadable entry is left out, never raised;
    a store that cannot be reached raises ``Unavailable``."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing, expired and unreadable ones left out)."""

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        """Store generations by request key (replacing what was there); failed ones are not kept."""


def cacheable(sampling: Sampling) -> bool:
    """Whether a request sampled this way may be answered from the cache: not when it asks for
    a fresh sample (temperature above 0 with no seed)."""
    return not (sampling.seed is None and sampling.temperature > 0)
