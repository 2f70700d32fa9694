"""Serving and scheduling: engines, the batch plan, and the executor that runs it."""

from batching.engines import Engine, FakeEngine, ReplayEngine, make_engine
from batching.executor import Executor, ProgressEvent, RunMetrics, RunResult
from batching.plan import DEFAULT_COSTS, ModelCost, Phase, Plan, make_plan, task_order
from batching.runstore import RunStore, SQLiteRunStore
from batching.spec import ExpertSpec, HTTPSource, ReplaySource, Sampling, VLLMSource
from batching.tasks import Compose, Task
from batching.types import Generation, Message, Request

__all__ = [
    "DEFAULT_COSTS",
    "Compose",
    "Engine",
    "Executor",
    "ExpertSpec",
    "FakeEngine",
    "Generation",
    "HTTPSource",
    "Message",
    "ModelCost",
    "Phase",
    "Plan",
    "ProgressEvent",
    "ReplayEngine",
    "ReplaySource",
    "Request",
    "RunMetrics",
    "RunResult",
    "RunStore",
    "SQLiteRunStore",
    "Sampling",
    "Task",
    "VLLMSource",
    "make_engine",
    "make_plan",
    "task_order",
]
