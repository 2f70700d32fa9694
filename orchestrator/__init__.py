"""The public surface: the SDK, its settings, pools, the answer types, and the service's client."""

from aggregators import AggregationResult, ExpertAnswer
from common.query import Query
from orchestrator.client import Client
from orchestrator.pool import Pool, load_pool
from orchestrator.sdk import Orchestrator
from orchestrator.settings import Settings, load_settings
from orchestrator.trace import Answer, Timings, Trace
from router import RouteDecision

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
