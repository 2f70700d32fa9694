"""Serving and scheduling: engines, the batch plan, and the executor that runs it."""

from batching.cache import GenerationCache, cacheable
from batching.engines import (
    DeltaCallback,
    Engine,
    EngineFactory,
    FakeEngine,
    ReplayEngine,
    ResultCallback,
    make_engine,
)
from batching.executor import Executor, ProgressEvent, RunMetrics, RunResult
from batching.plan import DEFAULT_COSTS, ModelCost, Phase, Placement, Plan, make_plan, model_footprint, task_order
from batching.ray_engine import ActorPolicy
from batching.ray_executor import RayExecutor
from batching.runstore import RunStore, SQLiteRunStore
from batching.spec import Cost, ExpertSpec, HTTPSource, ReplaySource, VLLMSource
from batching.warm import MadeEngines, WarmEngines

__all__ = [
    "ActorPolicy",
    "DEFAULT_COSTS",
    "DeltaCallback",
    "Engine",
    "EngineFactory",
    "Executor",
    "Cost",
    "ExpertSpec",
    "FakeEngine",
    "GenerationCache",
    "HTTPSource",
    "ModelCost",
    "Phase",
    "Placement",
    "Plan",
    "RayExecutor",
    "ProgressEvent",
    "ReplayEngine",
    "ReplaySource",
    "ResultCallback",
    "RunMetrics",
    "RunResult",
    "RunStore",
    "SQLiteRunStore",
    "VLLMSource",
    "MadeEngines",
    "WarmEngines",
    "cacheable",
    "make_engine",
    "make_plan",
    "model_footprint",
    "task_order",
]
