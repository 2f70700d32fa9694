"""Pools and what they hold: the pool file (``pool``), its artefacts and their versions
(``artefacts``: profiles, classifiers, topics, calibrations, which ones are active), the settings
(``settings``), the machine's memory and devices (``resources``), and each pool's routers
(``routing``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from orchestrator.pools.artefacts import ActiveVersions, PoolArtefacts
    from orchestrator.pools.pool import Pool, load_pool
    from orchestrator.pools.routing import pool_router
    from orchestrator.pools.settings import JobSettings, ServiceSettings, Settings, load_settings

__getattr__, __dir__ = lazy(
    __name__,
    {
        "ActiveVersions": "orchestrator.pools.artefacts",
        "PoolArtefacts": "orchestrator.pools.artefacts",
        "Pool": "orchestrator.pools.pool",
        "load_pool": "orchestrator.pools.pool",
        "pool_router": "orchestrator.pools.routing",
        "JobSettings": "orchestrator.pools.settings",
        "ServiceSettings": "orchestrator.pools.settings",
        "Settings": "orchestrator.pools.settings",
        "load_settings": "orchestrator.pools.settings",
    },
)

__all__ = [
    "ActiveVersions",
    "JobSettings",
    "Pool",
    "PoolArtefacts",
    "ServiceSettings",
    "Settings",
    "load_pool",
    "load_settings",
    "pool_router",
]
