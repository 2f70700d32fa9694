"""Serving and scheduling: engines, the batch plan, and the executor that runs it."""

from batching.engines import Engine, FakeEngine, ReplayEngine, make_engine
from batching.spec import ExpertSpec, HTTPSource, ReplaySource, Sampling, VLLMSource
from batching.tasks import Compose, Task
from batching.types import Generation, Message, Request

__all__ = [
    "Compose",
    "Engine",
    "ExpertSpec",
    "FakeEngine",
    "Generation",
    "HTTPSource",
    "Message",
    "ReplayEngine",
    "ReplaySource",
    "Request",
    "Sampling",
    "Task",
    "VLLMSource",
    "make_engine",
]
