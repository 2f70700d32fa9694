"""What the machine offers the planner: the memory models may hold at once, and what each
vLLM model takes of it. Read without importing torch (the parent stays light)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping

from batching import ExpertSpec, VLLMSource

log = logging.getLogger(__name__)

_HEADROOM = 0.8  # leave a fifth for the OS, the orchestrator itself and vLLM's workspace


def gpu_memory_mb() -> float | None:
    """Total memory of GPU 0 as nvidia-smi reports it; None where there is no NVIDIA GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        )
        return float(done.stdout.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("nvidia-smi gave no GPU memory (%s); planning for the CPU", exc)
        return None


def memory_budget_mb(gpu_mb: float | None) -> float:
    """On a GPU its memory, else the RAM available now; less headroom either way."""
    if gpu_mb is not None:
        return gpu_mb * _HEADROOM
    import psutil

    return psutil.virtual_memory().available / 2**20 * _HEADROOM


def footprints_mb(specs: Mapping[str, ExpertSpec], gpu_mb: float | None) -> dict[str, float]:
    """On a GPU, vLLM reserves ``gpu_memory_utilization`` of the device whatever the model's size,
    so that share is what the planner must pack; on a CPU the declared footprints stand."""
    if gpu_mb is None:
        return {}
    return {
        name: spec.source.gpu_memory_utilization * gpu_mb
        for name, spec in specs.items()
        if isinstance(spec.source, VLLMSource)
    }


class Machine:
    """What this machine offers a pool, measured once on first use: the planner's memory budget,
    the footprints that override the declared ones, and the cores split between co-resident vLLM
    models (``own_cores``: the engines are ours; on a CPU only)."""

    def __init__(self, specs: Mapping[str, ExpertSpec], budget_mb: float | None, *, own_cores: bool) -> None:
        self._specs = specs
        self._budget_mb = budget_mb
        self._cores = tuple(sorted(os.sched_getaffinity(0))) if own_cores else None
        self._memory: tuple[float, dict[str, float]] | None = None
        self._gpu = False
        self._lock = threading.Lock()

    def memory(self) -> tuple[float, dict[str, float]]:
        """The memory budget (MB) and the measured footprints."""
        with self._lock:
            if self._memory is None:
                gpu = gpu_memory_mb()
                self._gpu = gpu is not None
                self._memory = (self._budget_mb or memory_budget_mb(gpu), footprints_mb(self._specs, gpu))
            return self._memory

    def split_cores(self) -> tuple[int, ...] | None:
        """The cores the executor splits between co-resident vLLM models: ours, on a CPU only."""
        self.memory()  # measures the machine once, GPU included
        return self._cores if not self._gpu else None
