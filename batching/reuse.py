"""Reusing finished generations: the run store (resume) and the generation cache (any earlier
run), for the executor (``batching.executor``). A phase's tasks whose request is already stored
or cached are resolved before the phase loads anything; each model's finished batch is written
to the cache in one call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from batching.cache import GenerationCache, cacheable
from batching.run_state import RunState
from batching.runstore import RunStore, request_key, request_keys
from batching.spec import ExpertSpec
from common.pause_gc import paused_gc
from common.requests import Generation, Request
from common.tasks import Compose, Task

log = logging.getLogger("batching.executor")  # a part of the executor: its log


class Reuse:
    """The executor's store and cache side (a part of ``Executor``)."""

    store: RunStore | None
    cache: GenerationCache | None
    cache_reads: bool
    _request: Callable[[Task, RunState, Compose, Mapping[str, str]], Request | None]

    @property
    def _reading(self) -> bool:
        return self.cache is not None and self.cache_reads

    @paused_gc()  # bulk lookups, CPU-bound
    def _from_store(
        self, pending: list[str], state: RunState, specs: Mapping[str, ExpertSpec], compose: Compose
    ) -> None:
        """Resolve the phase's tasks whose request already has a stored generation (the run's
        checkpoint, else the cache), before any model loads: wave by wave, since a composed task's
        request is known once its inputs are. Each task is looked up once."""
        left = list(pending)
        while True:
            ready = [
                tid
                for tid in left
                if tid not in state.looked and all(state.resolved(d) for d in state.tasks[tid].after)
            ]
            if not ready:
                return
            asked: dict[str, tuple[Request, ExpertSpec]] = {}
            for tid in ready:
                request = self._request(state.tasks[tid], state, compose, {})
                if request is not None:
                    asked[tid] = (request, specs[state.tasks[tid].model])
            with state.lock:
                state.looked.update(ready)
            found: dict[str, Generation] = {}
            keys = dict(zip(asked, request_keys((spec, request) for request, spec in asked.values()), strict=True))
            if self.store is not None:
                stored = self.store.get_many(state.run_id, keys.values())
                found = {tid: stored[key] for tid, key in keys.items() if key in stored}
                with state.lock:
                    for tid, generation in found.items():
                        state.record(tid, generation)
                    state.metrics.resumed += len(found)
                if found:
                    log.info("run %s: %d task(s) found finished in the store", state.run_id, len(found))
            hits = self._from_cache({tid: one for tid, one in asked.items() if tid not in found}, state, keys)
            left = [tid for tid in left if not state.resolved(tid)]
            if not found and not hits:
                return

    def _from_cache(
        self,
        asked: Mapping[str, tuple[Request, ExpertSpec]],
        state: RunState,
        known: Mapping[str, str] | None = None,
    ) -> set[str]:
        """Resolve the tasks whose request the cache has answered before; returns them. Requests
        that ask for a fresh sample are not looked up. ``known``: request keys already made."""
        if not self._reading or not asked:
            return set()
        assert self.cache is not None
        looked = {tid: one for tid, one in asked.items() if cacheable(one[0].sampling(one[1].sampling))}
        missing = [tid for tid in looked if known is None or tid not in known]
        made = dict(zip(missing, request_keys((looked[tid][1], looked[tid][0]) for tid in missing), strict=True))
        keys = {tid: known[tid] if known is not None and tid in known else made[tid] for tid in looked}
        if not keys:
            return set()
        cached = self.cache.get_many(keys.values())
        hits = {tid: _answering(cached[key], asked[tid][0].id) for tid, key in keys.items() if key in cached}
        with state.lock:
            for tid, generation in hits.items():
                state.record(tid, generation)
            state.cached.update(hits)
            state.metrics.cache_hits += len(hits)
            state.metrics.cache_misses += len(keys) - len(hits)
        if hits:
            log.info("run %s: %d of %d task(s) answered from the cache", state.run_id, len(hits), len(keys))
        return set(hits)

    def _to_cache(self, spec: ExpertSpec, items: list[tuple[str, Request]], out: Mapping[str, Generation]) -> None:
        """Write a model's finished batch to the cache in one call (fresh samples left out)."""
        if self.cache is None:
            return
        requests = dict(items)
        entries = {
            request_key(spec, requests[tid]): generation
            for tid, generation in out.items()
            if generation.ok and tid in requests and cacheable(requests[tid].sampling(spec.sampling))
        }
        if entries:
            self.cache.put_many(entries)


def _answering(generation: Generation, request_id: str) -> Generation:
    """A cached generation as the answer to request ``request_id`` (the same task of an earlier
    run already names it: no copy)."""
    if generation.request_id == request_id:
        return generation
    return generation.model_copy(update={"request_id": request_id})
