"""Whether a pool's experts can be reached: their recordings exist, their endpoints answer.

``coe route`` and ``coe plan`` run no expert, so they check here, before any work, that what
the pool names is there: a replay expert's recordings file, an HTTP expert's endpoint serving
its model (the engine's own load check). vLLM experts are not started to be checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batching import EngineFactory
from batching.spec import HTTPSource, ReplaySource
from common.errors import NotFound
from orchestrator.pool import Pool


def check_sources(pool: Pool, engine_factory: EngineFactory, experts: Iterable[str] | None = None) -> None:
    """NotFound naming the expert whose recordings are missing; the HTTP engine's error naming an
    endpoint that does not answer or does not serve the model."""
    for name in experts if experts is not None else pool.expert_names:
        spec = pool.spec(name)
        if isinstance(spec.source, ReplaySource) and not Path(spec.source.path).is_file():
            raise NotFound(f"expert {name!r}: its recordings file {spec.source.path} does not exist")
        if isinstance(spec.source, HTTPSource):
            engine = engine_factory(spec)
            engine.load()
            engine.unload()


__all__ = ["check_sources"]
