"""Where planned groups run: in this process (``batching.Executor``, the default) or as actors on
a Ray cluster (``batching.ray_executor.RayExecutor``), as ``settings.executor`` says. The
pipeline and ``Orchestrator.run_tasks`` ask ``ExecutorChoice.executor`` for theirs; both kinds run a
plan under one contract and return the same ``RunResult``, so every door (the SDK, ``coe
eval``, jobs, the service) runs on either without knowing which."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from batching.cache import GenerationCache
from batching.deltas import DeltaListener
from batching.engines.base import EngineFactory
from batching.executor import Executor
from batching.results import ProgressCallback
from batching.runstore import RunStore
from batching.warm import WarmEngines
from common.tasks import Task
from common.vocabulary import ExecutorKind

__all__ = ["ExecutorChoice"]


@dataclass(frozen=True)
class ExecutorChoice:
    """Which executor runs a plan: ``local``, or ``ray`` joining ``ray_address``."""

    kind: ExecutorKind = "local"
    ray_address: str | None = None

    def executor(
        self,
        engine_factory: EngineFactory,
        store: RunStore | None,
        progress: ProgressCallback | None,
        warm: WarmEngines | None,
        cores: tuple[int, ...] | None,
        *,
        on_delta: DeltaListener | None = None,
        skip: Callable[[Task], str | None] | None = None,
        cache: GenerationCache | None = None,
        cache_reads: bool = True,
    ) -> Executor:
        """The executor of this kind. On Ray, engines are neither kept warm nor bound to this
        machine's cores: each run starts and ends its actors where the cluster places them, and
        the workers import this checkout first where it lies at the same path."""
        if self.kind == "ray":
            from batching.ray_executor import RayExecutor
            from orchestrator.pools.settings import PROJECT_ROOT

            return RayExecutor(
                engine_factory,
                store,
                progress,
                address=self.ray_address,
                on_delta=on_delta,
                skip=skip,
                cache=cache,
                cache_reads=cache_reads,
                code_root=PROJECT_ROOT,
            )
        return Executor(
            engine_factory,
            store,
            progress,
            warm,
            cores,
            on_delta=on_delta,
            skip=skip,
            cache=cache,
            cache_reads=cache_reads,
        )
