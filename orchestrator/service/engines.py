"""Engines as the service sees them: each load and each unload counted in ``/metrics``.

While serving, an unload only happens to make room for another model (a warm session keeps
every engine that fits), so it is counted as a swap; unloads at shutdown are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batching import Engine, EngineFactory, ExpertSpec
from batching.engines.base import DeltaCallback, ResultCallback
from common.requests import Generation, Request
from orchestrator.service.metrics import Metrics


class MeteredEngine:
    """An engine that reports its loads and unloads to the service's metrics."""

    def __init__(self, engine: Engine, metrics: Metrics, serving: list[bool]) -> None:
        self.spec: ExpertSpec = engine.spec
        self._engine = engine
        self._metrics = metrics
        self._serving = serving  # shared flag: False once the service shuts down

    @property
    def loaded(self) -> bool:
        return self._engine.loaded

    def load(self) -> None:
        was = self._engine.loaded
        self._engine.load()
        if not was and self._engine.loaded:
            self._metrics.loads.labels(self.spec.name).inc()
            self._metrics.loaded.inc()

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        return self._engine.generate(requests, on_result, on_delta)

    def unload(self) -> None:
        was = self._engine.loaded
        self._engine.unload()
        if was and not self._engine.loaded:
            self._metrics.loaded.dec()
            if self._serving[0]:
                self._metrics.swaps.labels(self.spec.name).inc()

    def footprint_mb(self) -> float | None:
        return self._engine.footprint_mb()

    def __getattr__(self, name: str) -> Any:  # what else the engine exposes (e.g. the cores it is bound to)
        return getattr(self._engine, name)


def metered(factory: EngineFactory, metrics: Metrics, serving: list[bool]) -> EngineFactory:
    """``factory`` whose engines count their loads and unloads."""

    def make(spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Engine:
        engine = factory(spec) if cpus is None else factory(spec, cpus=cpus)
        return MeteredEngine(engine, metrics, serving)

    return make


__all__ = ["MeteredEngine", "metered"]
