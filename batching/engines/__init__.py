"""Engines: one contract (``Engine``), one implementation per way a model is served.

``make_engine`` picks the implementation from the expert's ``source.kind``; heavy imports
(vLLM, httpx) happen only when an engine of that kind is made.
"""

from __future__ import annotations

from pathlib import Path

from batching.engines.base import (
    DeltaCallback,
    Engine,
    EngineFactory,
    ResultCallback,
    chat_messages,
    completion_prompt,
)
from batching.engines.fake import FakeEngine
from batching.engines.replay import ReplayEngine
from batching.spec import ExpertSpec

__all__ = [
    "DeltaCallback",
    "Engine",
    "EngineFactory",
    "FakeEngine",
    "ReplayEngine",
    "ResultCallback",
    "chat_messages",
    "completion_prompt",
    "make_engine",
]


def make_engine(spec: ExpertSpec, *, cache_dir: Path, cpus: tuple[int, ...] | None = None) -> Engine:
    """The engine that serves ``spec``; ``cache_dir`` holds converted packaged models.

    ``cpus``: the cores a vLLM engine on the CPU build is bound to (None: all); engines of the
    other kinds compute elsewhere and take no cores.
    """
    kind = spec.source.kind
    if kind == "replay":
        return ReplayEngine(spec)
    if kind == "http":
        from batching.engines.http import HTTPEngine

        return HTTPEngine(spec)
    if kind == "vllm":
        from batching.engines.vllm_engine import VLLMEngine

        return VLLMEngine(spec, cache_dir=cache_dir, cpus=cpus)
    raise AssertionError(f"unhandled engine kind {kind!r}")  # the Source union is closed
