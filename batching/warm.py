"""Warm engines: loaded models kept between runs of one session while they fit the budget.

An executor given a ``WarmEngines`` takes a model's engine from it when one for the same
expert is still loaded (no load), and hands engines back at the end of a phase instead of
unloading them. Before a phase loads models that are not warm, engines the phase does not use
are unloaded, least recently used first, until the phase fits the memory budget beside what
stays. ``close()`` unloads everything; the SDK's ``Orchestrator`` does it on leaving ``with``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping

from batching.engines.base import Engine
from batching.spec import ExpertSpec

__all__ = ["WarmEngines"]

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

    def close(self) -> None:
        """Unload every warm engine."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.unload()
