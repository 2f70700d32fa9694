"""``coe serve``: the REST service (FastAPI), OpenAI-compatible too. Build it with ``create_app``."""

from orchestrator.pools.settings import ServiceSettings
from orchestrator.service.app import create_app

__all__ = ["ServiceSettings", "create_app"]
