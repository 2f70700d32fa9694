"""A vLLM general plugin (entry point ``vllm.general_plugins`` in pyproject.toml): vLLM calls
``idle_waits`` in each of its processes as it starts (its engine process and its workers).

vLLM's engine process hands each step to its worker through a shared-memory queue and waits
for the answer by polling the queue and yielding the core (``sched_yield``) between looks, for
up to a second after its last read; the worker waits for the next step the same way. A yielding
process stays runnable, so it keeps its share of a core: sampled on the default pool here
(py-spy), the engine processes spent their whole step in that loop, 2-4 s of CPU per answer of
6-8 s on a 2-core machine whose workers needed every cycle. With ``SYMBOLIC_COE_IDLE_WAITS=1`` (set
by ``VLLMArgs.environment`` for the engines this project starts; a signal between two parts
of the engine, not a setting, so not one of the ``COE_*`` variables) a waiting reader sleeps
between looks instead, a sixteenth of how long it has waited so far (0.05-0.5 ms), so a step's
answer is seen soon after it is written and a queue that stays empty costs almost nothing.
After that second vLLM's own waiting (a socket poll) is unchanged, and so is anything else that
runs vLLM in this environment.

Measured here: a warm session on the default pool answered in 5.2-6.6 s against 7.6-8.8 s, its
engine processes using 0.13-0.26 s of CPU per answer against 2-4 s; a lone engine (SmolLM2, one
request) made 19.5-23.7 tokens/s against 20.8-25.0 as vLLM ships, and fixed naps of 0.05 or
0.1 ms made 16-22.
"""

from __future__ import annotations

import os
import time
from typing import Any

ENV = "SYMBOLIC_COE_IDLE_WAITS"
SHORTEST_NAP_S = 0.00005
LONGEST_NAP_S = 0.0005


def idle_waits() -> None:
    """Make every reader of vLLM's shared-memory queues in this process nap instead of spin."""
    if os.environ.get(ENV) != "1":
        return
    from vllm.distributed.device_communicators import shm_broadcast

    condition = getattr(shm_broadcast, "SpinCondition", None)
    polled = getattr(condition, "wait", None)
    if condition is None or polled is None or getattr(polled, "coe_naps", False):
        return  # another vLLM (nothing of ours to change), or done already in this process

    def wait(self: Any, timeout_ms: int | None = None) -> None:
        waited = time.monotonic() - self.last_read
        if waited > self.busy_loop_s:  # idle long enough: vLLM's own poll of its socket
            polled(self, timeout_ms)
            return
        time.sleep(min(LONGEST_NAP_S, max(SHORTEST_NAP_S, waited / 16)))

    wait.coe_naps = True  # type: ignore[attr-defined]
    condition.wait = wait
