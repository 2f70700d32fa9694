"""The semantic cache in the service (``orchestrator.pipeline.semantic``), when it is enabled.

Requests are looked up before they reach the dispatcher, so a reused answer never waits for a
batch; the misses run through the one pipeline and their answers are kept after their batch.
A request refuses the cache with ``Cache-Control: no-cache`` (not answered from it; its answer
is still kept) or ``no-store`` (neither). Each answer's trace says hit, miss or refused; the
metrics count lookups by outcome, their time and the hit rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from common.errors import CoeError
from common.query import Query
from common.vocabulary import SemanticMode
from orchestrator.pipeline.semantic import Scope, SemanticCache
from orchestrator.pipeline.trace import Answer
from orchestrator.pools.settings import SemanticCacheSettings
from orchestrator.service.dispatch import Asking
from orchestrator.service.metrics import Metrics
from orchestrator.stores.semantic import open_semantic_store
from skills import make_embedder

log = logging.getLogger(__name__)


def semantic_mode(headers: Mapping[str, str], enabled: bool) -> SemanticMode:
    """How a request uses the cache: ``off`` when it is not enabled; else by ``Cache-Control``:
    ``no-store`` skips it, ``no-cache`` refreshes it (not read, still written), else ``use``."""
    if not enabled:
        return "off"
    directives = {part.split("=", 1)[0].strip().lower() for part in headers.get("cache-control", "").split(",")}
    if "no-store" in directives:
        return "skip"
    if "no-cache" in directives:
        return "refresh"
    return "use"


class ServiceCache:
    """The service's semantic cache: the pool's scope, the store, the metrics."""

    def __init__(
        self, settings: SemanticCacheSettings, location: str, pool: str, metrics: Metrics, encoders_dir: Path
    ) -> None:
        store = open_semantic_store(location, ttl_s=settings.ttl_s, keep=settings.keep)
        self.cache = SemanticCache(make_embedder(settings.encoder, cache_dir=encoders_dir), store, settings.threshold)
        self.pool = pool
        self.metrics = metrics

    def warm(self) -> None:
        """Load the encoder now, not on the first request."""
        self.cache.embedder.embed(["warming up"])

    def scope(self, asking: Asking) -> Scope:
        return Scope(self.pool, asking.policy, asking.k, asking.aggregation, asking.max_tokens)

    def look(self, queries: Sequence[Query], asking: Asking) -> list[Answer | None]:
        """Each question's reused answer, or None. A store that fails is logged and every
        question is a miss: the cache never stops a request."""
        started = time.perf_counter()
        try:
            looked = self.cache.look(queries, self.scope(asking))
        except CoeError as exc:
            log.warning("semantic cache: lookup skipped: %s", exc)
            return [None] * len(queries)
        self.metrics.semantic_seconds.observe(time.perf_counter() - started)
        hits = sum(one.hit for one in looked)
        self.metrics.looked_up("hit", hits)
        self.metrics.looked_up("miss", len(looked) - hits)
        return [one.answer for one in looked]

    def refused(self, count: int) -> None:
        self.metrics.looked_up("refused", count)

    def after(self, asking: Asking, queries: Sequence[Query], answers: list[Answer]) -> list[Answer]:
        """The batch's answers with their trace notes; kept unless the requests said no-store."""
        mode = asking.semantic
        if mode == "off":
            return answers
        if mode in ("use", "refresh"):
            by_id = {q.id: q for q in queries}
            try:
                looked = self.cache.prepare([by_id[a.question_id] for a in answers], self.scope(asking))
                self.cache.keep(looked, answers)
            except CoeError as exc:
                log.warning("semantic cache: %d answer(s) not kept: %s", len(answers), exc)
        note = self.cache.note("miss" if mode == "use" else "refused")
        return [a.model_copy(update={"trace": a.trace.model_copy(update={"semantic_cache": note})}) for a in answers]

    def close(self) -> None:
        self.cache.store.close()


__all__ = ["ServiceCache", "semantic_mode"]
