"""The leaf every layer may use: the error tree and the small shared vocabulary (requests,
generations, tasks, the "run these tasks" callable, recordings)."""

from common.errors import (
    BadInput,
    CoeError,
    ConfigError,
    Conflict,
    EndpointError,
    EngineError,
    EngineLoadError,
    EngineTimeout,
    GenerationFailed,
    NotFound,
    Overloaded,
    RateLimited,
    ReplayMiss,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from common.query import Query, query_id
from common.recordings import Record, ReplayBook, iter_records, replay_book
from common.requests import Generation, Message, Request, Sampling
from common.tasks import Compose, Composed, RunTasks, Task

__all__ = [
    "BadInput",
    "CoeError",
    "Compose",
    "Composed",
    "ConfigError",
    "Conflict",
    "EndpointError",
    "EngineError",
    "EngineLoadError",
    "EngineTimeout",
    "Generation",
    "GenerationFailed",
    "Message",
    "NotFound",
    "Overloaded",
    "Query",
    "RateLimited",
    "Record",
    "ReplayBook",
    "ReplayMiss",
    "Request",
    "RunTasks",
    "Sampling",
    "Task",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "iter_records",
    "query_id",
    "replay_book",
]
