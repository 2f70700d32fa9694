"""Ray for the Ray executor (``batching.ray_executor``): whether it is installed, joining a
cluster or starting one on this machine, and what a plan's devices ask of the cluster.

Ray is imported only when a run needs it: ``connect`` joins the cluster at ``address`` (or
``RAY_ADDRESS``), else starts one on this machine for the process, gives the workers the
driver's code first (``code_path``, from the folder the caller names), and logs the dashboard's
address when Ray's dashboard is installed. A Ray started here is shut down by ``stop_started``
after an interrupt.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from batching.engines.kinds import engine_kind
from batching.plan import Plan
from batching.spec import ExpertSpec, VLLMSource
from common.errors import ConfigError, Unavailable

__all__ = [
    "INSTALL",
    "code_path",
    "connect",
    "device_gpus",
    "gpu_shares",
    "ray_installed",
    "require_ray",
    "share",
    "stop_started",
]

log = logging.getLogger(__name__)

INSTALL = "pip install 'symbolic-coe[ray]'"
_connecting = threading.Lock()
_started_here: list[bool] = []  # holds True while a Ray that connect() started runs


def ray_installed() -> bool:
    """Whether Ray can be imported here (checked without importing it)."""
    import importlib.util
    import sys

    if "ray" in sys.modules:
        return sys.modules["ray"] is not None
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def require_ray() -> ModuleType:
    """The ``ray`` module; a one-line ConfigError saying how to install it when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"the Ray executor needs Ray, which is not installed: {INSTALL}") from exc
    return ray


def code_path(root: Path | None) -> dict[str, Any]:
    """A runtime environment whose workers import the code under ``root`` (the project's folder)
    first, in front of ``PYTHONPATH`` (on a node where that folder is not, the project installed
    there is imported); None: the workers' own path."""
    if root is None:
        return {}
    given = os.environ.get("PYTHONPATH", "")
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (str(root), given) if p)}}


def connect(address: str | None = None, code_root: Path | None = None) -> ModuleType:
    """Ray, connected: to the cluster at ``address`` (``auto``: the one this machine belongs to;
    None: ``RAY_ADDRESS``, else a Ray started on this machine for this process), its workers
    importing the code under ``code_root`` first (``code_path``). Once per process; a connection
    made before (by the caller) is used as it is.

    A Ray started here dies with the thread that started it (its processes get the parent-death
    signal of that thread), so off the main thread it is started from a thread kept for the life
    of the process."""
    ray = require_ray()
    with _connecting:
        if ray.is_initialized():
            return ray
        if address is None and not os.environ.get("RAY_ADDRESS"):
            _started_here[:] = [True]
        if threading.current_thread() is threading.main_thread():
            context = _init(ray, address, code_root)
        else:
            box: dict[str, Any] = {}
            started = threading.Event()

            def keep() -> None:
                try:
                    box["context"] = _init(ray, address, code_root)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    box["error"] = exc
                finally:
                    started.set()
                if "context" in box:
                    threading.Event().wait()  # the Ray started here lives as long as this thread

            threading.Thread(target=keep, name="ray-keeper", daemon=True).start()
            started.wait()
            if "error" in box:
                raise box["error"]
            context = box["context"]
        dashboard = getattr(context, "dashboard_url", None)
        log.info(
            "ray: %s (%s); dashboard: %s",
            f"joined the cluster at {address}" if address else "connected",
            ", ".join(f"{k} {v:g}" for k, v in sorted(ray.cluster_resources().items()) if k in ("CPU", "GPU")),
            f"http://{dashboard}" if dashboard else "not installed (pip install 'ray[default]')",
        )
        return ray


def stop_started() -> None:
    """Shut down the Ray ``connect`` started on this machine, if it did: after an interrupt, so
    that none of its processes outlives this one (an abrupt exit can leave Ray's agents behind)."""
    with _connecting:
        if not _started_here:
            return
        _started_here.clear()
        import ray

        log.info("ray: shutting down the Ray started on this machine")
        ray.shutdown()


def _init(ray: ModuleType, address: str | None, code_root: Path | None) -> Any:
    try:
        return ray.init(address=address, runtime_env=code_path(code_root), logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        where = f"at {address!r}" if address else "on this machine"
        raise Unavailable(f"could not start or join a Ray cluster {where}: {exc}") from exc


def share(total: float, parts: float) -> float:
    """``total / parts`` rounded down to Ray's resource granularity (1e-4)."""
    return math.floor(total / parts * 10_000) / 10_000


def device_gpus(plan: Plan, specs: Mapping[str, ExpertSpec]) -> dict[int, int]:
    """The GPUs each of the plan's devices holds on a GPU cluster: as many as the widest tensor
    parallel local (vLLM) model planned on it needs, one at least."""
    out = {p.device: 1 for p in plan.phases}
    for phase in plan.phases:
        for model in phase.models:
            source = specs[model].source
            if isinstance(source, VLLMSource):
                out[phase.device] = max(out[phase.device], source.tensor_parallel_size)
    return out


def gpu_shares(models: Sequence[str], specs: Mapping[str, ExpertSpec], gpus: int) -> dict[str, float]:
    """What each local model of a phase asks of its device's ``gpus``: all of them when it is
    alone; else its share by declared memory (evenly when one declares none), a fraction of a GPU
    or, from one up, whole GPUs (Ray takes fractions below one only)."""
    local = [m for m in models if engine_kind(specs[m]).local]
    if len(local) == 1:
        return {local[0]: float(gpus)}
    sizes = {m: specs[m].memory_mb or 0.0 for m in local}
    declared = all(sizes.values())
    out = {}
    for model in local:
        part = sizes[model] / sum(sizes.values()) if declared else 1.0 / len(local)
        asked = part * gpus
        out[model] = share(asked, 1) if asked < 1 else float(math.floor(asked))
    return out
