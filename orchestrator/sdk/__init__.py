"""The public SDK: ``Orchestrator`` (``orchestrator.sdk.core``), a session over one pool, with
its async twins (``orchestrator.sdk.twins``)."""

from orchestrator.sdk.core import Orchestrator

__all__ = ["Orchestrator"]
