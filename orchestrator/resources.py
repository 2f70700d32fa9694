"""What the machine offers the planner: the memory models may hold at once."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_HEADROOM = 0.8  # leave a fifth for the OS, the orchestrator itself and vLLM's workspace


def memory_budget_mb() -> float:
    """GPU memory of one device where a GPU is visible, else the RAM available now, less headroom."""
    try:
        import torch

        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(0).total_memory / 2**20
            return total * _HEADROOM
    except ImportError:  # serving only over HTTP/replay: no torch needed
        pass
    import psutil

    return psutil.virtual_memory().available / 2**20 * _HEADROOM
