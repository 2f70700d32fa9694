"""``coe serve``: the REST service (FastAPI), OpenAI-compatible too. Build it with ``create_app``."""

from orchestrator.service.app import create_app
from orchestrator.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
