"""The engine kinds, declared once: what each one is, how it is built and what it can do.

Pool loading, the planner, the executor, the run store, the router and the service ask this
registry instead of testing kind names. Adding a kind is one entry here, its source model in
``batching.spec`` (the pool file's ``[models.source]``) and its engine class.

    kind     serves                               local  recorded  stream  logprobs  sleep
    vllm     a model in this process's vLLM       yes    no        yes     yes       on a GPU
    http     any OpenAI-compatible endpoint       no     no        yes     yes       no
    replay   what a model once answered (a file)  no     yes       no      no        no

``local``: the model computes on this machine's cores and holds its memory (co-resident local
models split the CPU cores; the planner needs its footprint). ``recorded``: it answers only
from recordings, so it writes no new text (never a synthesis aggregator), answers a
benchmark's items only (the item's benchmark decides its answer) and gives no token
log-probabilities. ``sleep``: where the platform allows, it can be parked instead of unloaded
(vLLM's sleep mode needs CUDA, ROCm or XPU); the warm session (``batching.warm``) parks only
engines of such kinds, and only those that also report ``can_sleep`` once loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from batching.spec import ExpertSpec, HTTPSource, ReplaySource, VLLMSource

if TYPE_CHECKING:
    from batching.engines.base import Engine


class ModelCost(BaseModel):
    """What the planner assumes a model costs (override per model with measured figures)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    load_seconds: float = Field(30.0, ge=0, description="Seconds to load the model.")
    tokens_per_second: float = Field(50.0, gt=0, description="Output tokens/s for a whole batch.")
    prompt_tokens_per_second: float = Field(1000.0, gt=0, description="Prompt tokens/s (prefill).")


Build = Callable[[ExpertSpec, Path, "tuple[int, ...] | None"], "Engine"]
"""(the expert, the converted-models cache folder, the CPU cores it may use) -> its engine."""


@dataclass(frozen=True)
class EngineKind:
    name: str
    source: type[BaseModel]
    """The pool file's ``[models.source]`` of this kind (``batching.spec``)."""
    build: Build
    deciding: frozenset[str]
    """Source fields that decide a generation (the run store's and cache's key); timeouts,
    retries, where a recording lies and the like do not."""
    cost: ModelCost
    """The planner's default cost of a model of this kind (measured roughly on a 2-core CPU for vLLM)."""
    local: bool
    recorded: bool
    stream: bool
    logprobs: bool
    sleep: bool


def _vllm(spec: ExpertSpec, cache_dir: Path, cpus: tuple[int, ...] | None) -> Engine:
    from batching.engines.vllm_engine import VLLMEngine

    return VLLMEngine(spec, cache_dir=cache_dir, cpus=cpus)


def _http(spec: ExpertSpec, cache_dir: Path, cpus: tuple[int, ...] | None) -> Engine:
    from batching.engines.http import HTTPEngine

    return HTTPEngine(spec)


def _replay(spec: ExpertSpec, cache_dir: Path, cpus: tuple[int, ...] | None) -> Engine:
    from batching.engines.replay import ReplayEngine

    return ReplayEngine(spec)


KINDS: dict[str, EngineKind] = {
    "vllm": EngineKind(
        name="vllm",
        source=VLLMSource,
        build=_vllm,
        deciding=frozenset({"kind", "model", "dtype", "max_model_len"}),
        cost=ModelCost(load_seconds=30.0, tokens_per_second=50.0, prompt_tokens_per_second=1000.0),
        local=True,
        recorded=False,
        stream=True,
        logprobs=True,
        sleep=True,
    ),
    "http": EngineKind(
        name="http",
        source=HTTPSource,
        build=_http,
        deciding=frozenset({"kind", "base_url", "model"}),
        cost=ModelCost(load_seconds=0.0, tokens_per_second=200.0, prompt_tokens_per_second=5000.0),
        local=False,
        recorded=False,
        stream=True,
        logprobs=True,
        sleep=False,
    ),
    "replay": EngineKind(
        name="replay",
        source=ReplaySource,
        build=_replay,
        deciding=frozenset({"kind", "model"}),
        cost=ModelCost(load_seconds=1.0, tokens_per_second=1e6, prompt_tokens_per_second=1e6),
        local=False,
        recorded=True,
        stream=False,
        logprobs=False,
        sleep=False,
    ),
}


def engine_kind(spec_or_name: ExpertSpec | str) -> EngineKind:
    """The kind of an expert (or the kind called so)."""
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.source.kind
    return KINDS[name]


__all__ = ["KINDS", "EngineKind", "ModelCost", "engine_kind"]
