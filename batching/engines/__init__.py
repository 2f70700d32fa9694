"""Engines: one contract (``Engine``), one implementation per way a model is served.

``make_engine`` builds the engine of the expert's kind (``batching.engines.kinds``, the one
registry of kinds and what each can do); heavy imports (vLLM, httpx) happen only when an engine
of that kind is made.
"""

from __future__ import annotations

from pathlib import Path

from batching.engines.base import (
    DeltaCallback,
    Engine,
    EngineFactory,
    ResultCallback,
    Sleeper,
    chat_messages,
    completion_prompt,
)
from batching.engines.fake import FakeEngine
from batching.engines.kinds import KINDS, EngineKind, engine_kind
from batching.engines.replay import ReplayEngine
from batching.spec import ExpertSpec

__all__ = [
    "DeltaCallback",
    "Engine",
    "EngineFactory",
    "KINDS",
    "EngineKind",
    "FakeEngine",
    "ReplayEngine",
    "ResultCallback",
    "Sleeper",
    "chat_messages",
    "completion_prompt",
    "engine_kind",
    "make_engine",
]


def make_engine(spec: ExpertSpec, *, cache_dir: Path, cpus: tuple[int, ...] | None = None) -> Engine:
    """The engine that serves ``spec``; ``cache_dir`` holds converted packaged models.

    ``cpus``: the cores a vLLM engine on the CPU build is bound to (None: all); engines of the
    other kinds compute elsewhere and take no cores.
    """
    return engine_kind(spec).build(spec, cache_dir, cpus)
