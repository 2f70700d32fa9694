"""The public surface: the SDK, its settings, pools, the answer types, and the service's client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from aggregators import AggregationResult, ExpertAnswer
    from common.query import Query
    from orchestrator.pipeline.trace import Answer, Timings, Trace
    from orchestrator.pools.pool import Pool, load_pool
    from orchestrator.pools.settings import Settings, load_settings
    from orchestrator.remote.client import Client
    from orchestrator.sdk import Orchestrator
    from router import RouteDecision

__getattr__, __dir__ = lazy(
    __name__,
    {
        "AggregationResult": "aggregators",
        "ExpertAnswer": "aggregators",
        "Query": "common.query",
        "Answer": "orchestrator.pipeline.trace",
        "Timings": "orchestrator.pipeline.trace",
        "Trace": "orchestrator.pipeline.trace",
        "Pool": "orchestrator.pools.pool",
        "load_pool": "orchestrator.pools.pool",
        "Settings": "orchestrator.pools.settings",
        "load_settings": "orchestrator.pools.settings",
        "Client": "orchestrator.remote.client",
        "Orchestrator": "orchestrator.sdk",
        "RouteDecision": "router",
    },
)

__all__ = [
    "AggregationResult",
    "Answer",
    "Client",
    "ExpertAnswer",
    "Orchestrator",
    "Pool",
    "Query",
    "RouteDecision",
    "Settings",
    "Timings",
    "Trace",
    "load_pool",
    "load_settings",
]
