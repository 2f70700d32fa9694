"""What the machine offers the planner: the memory models may hold at once, and what each
vLLM model takes of it. Read without importing torch (the parent stays light)."""

from __future__ import annotations

import logging
import shutil
import subprocess
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
