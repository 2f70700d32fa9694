"""The public surface: the SDK, its settings, pools, and the answer types."""

from orchestrator.pool import Pool, load_pool
from orchestrator.sdk import Orchestrator
from orchestrator.settings import Settings, load_settings
from orchestrator.trace import AggregatorCall, Answer, ExpertCall, Trace

__all__ = [
    "AggregatorCall",
    "Answer",
    "ExpertCall",
    "Orchestrator",
    "Pool",
    "Settings",
    "Trace",
    "load_pool",
    "load_settings",
]
