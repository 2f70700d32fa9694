"""Warm engines: loaded models kept between runs of one session while they fit the budget.

An executor given a ``WarmEngines`` takes a model's engine from it when one for the same
expert is still loaded (no load), and hands engines back at the end of a phase instead of
unloading them. Before a phase loads models that are not warm, engines the phase does not use
are unloaded, least recently used first, until the phase fits the memory budget beside what
stays. ``close()`` unloads everything; the SDK's ``Orchestrator`` does it on leaving ``with``.
``preload`` fills the set before any run (a service's warm-up).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence

from batching.engines.base import Engine, EngineFactory
from batching.spec import ExpertSpec
from common.errors import CoeError, EngineLoadError

__all__ = ["WarmEngines", "split_cores"]

log = logging.getLogger(__name__)


class WarmEngines:
    """Loaded engines by expert name, with each one's footprint (MB), under ``budget_mb``."""

    def __init__(self, budget_mb: float, sizes: Mapping[str, float]) -> None:
        self.budget_mb = budget_mb
        self.sizes = dict(sizes)
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def take(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Engine | None:
        """The loaded engine of this exact expert bound to ``cpus``, if one is warm (it leaves the
        set until handed back)."""
        with self._lock:
            engine = self._engines.pop(spec.name, None)
        if engine is None:
            return None
        bound = getattr(engine, "cpus", None)  # only vLLM engines are bound to cores
        # the pool entry changed, the engine died, or it is bound to other cores than this phase gives
        if engine.spec != spec or not engine.loaded or (bound is not None or cpus is not None) and bound != cpus:
            engine.unload()
            return None
        return engine

    def give_back(self, engine: Engine) -> bool:
        """Keep a loaded engine for the next run if it fits beside the others; False if it did not."""
        name = engine.spec.name
        with self._lock:
            held = sum(self.sizes.get(n, 0.0) for n in self._engines)
            if not engine.loaded or held + self.sizes.get(name, 0.0) > self.budget_mb:
                return False
            self._engines[name] = engine
            return True

    def make_room(self, needed_mb: float, keep: Collection[str]) -> None:
        """Unload warm engines not in ``keep`` (least recently used first) until ``needed_mb`` more fit."""
        while True:
            with self._lock:
                held = sum(self.sizes.get(n, 0.0) for n in self._engines)
                victims = [n for n in self._engines if n not in keep]
                if held + needed_mb <= self.budget_mb or not victims:
                    return
                engine = self._engines.pop(victims[0])
            log.info("warm session: unloading %s to make room", engine.spec.name)
            engine.unload()

    def preload(
        self, specs: Sequence[ExpertSpec], factory: EngineFactory, cores: tuple[int, ...] | None = None
    ) -> list[str]:
        """Load the engines of ``specs``, in order, that fit the budget beside those loaded before
        them, and keep them; their local (vLLM) models are bound to ``cores`` as the executor binds
        the models of one phase (``split_cores``). Returns the names kept. Models that could not be
        loaded are named in one ``EngineLoadError`` once the others are loaded."""
        chosen: list[ExpertSpec] = []
        held = sum(self.sizes.get(n, 0.0) for n in self.names)
        for spec in specs:
            size = self.sizes.get(spec.name, 0.0)
            if spec.name in self.names or held + size > self.budget_mb:
                continue
            chosen.append(spec)
            held += size
        bound = split_cores(cores, [s.name for s in chosen if s.source.kind == "vllm"])
        kept: list[str] = []
        failed: list[str] = []
        for spec in chosen:
            cpus = bound.get(spec.name)
            try:
                engine = factory(spec) if cpus is None else factory(spec, cpus=cpus)
                engine.load()
            except CoeError as exc:
                log.warning("warm-up: could not load %s: %s", spec.name, exc)
                failed.append(f"{spec.name} ({exc})")
                continue
            if self.give_back(engine):
                kept.append(spec.name)
            else:
                engine.unload()
        if failed:
            raise EngineLoadError(f"could not load {'; '.join(failed)}")
        return kept

    def close(self) -> None:
        """Unload every warm engine."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.unload()


def split_cores(cores: tuple[int, ...] | None, local: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Disjoint core sets for co-resident local models (none to give when one is alone, or when
    ``cores`` is None: binding is then left to the engines)."""
    if cores is None or len(local) < 2:
        return {}
    share = max(1, len(cores) // len(local))
    return {m: tuple(cores[(i * share + c) % len(cores)] for c in range(share)) for i, m in enumerate(local)}
