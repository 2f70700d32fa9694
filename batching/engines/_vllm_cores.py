"""The cores a loaded vLLM engine computes on (CPU build), changed without a reload: both ends.

vLLM 0.32 binds its model worker's OpenMP threads once, as the worker starts
(``VLLM_CPU_OMP_THREADS_BIND``). An engine that had to share the cores with a co-resident model
then kept its share even when it ran alone, and one loaded alone kept every core when another
joined it. So ``VLLMEngine`` starts its worker on every core this process may use and binds it
to the cores it is given afterwards, as often as asked: the child hands ``Bind`` to the worker
through vLLM's ``collective_rpc`` and the worker extension ``WorkerCores`` (vLLM's
``worker_extension_cls``) sets torch's thread count to the number of cores and lays the
worker's threads out on them one to a core, as vLLM does at start. The worker never runs more
threads than it started with, so nothing vLLM sized at start is outgrown. Measured here: a bind
takes 25-40 ms.

The parent's side is ``CoreBinding``, the part of ``VLLMEngine`` that sends ``Bind``. Between
batches it waits for the child's ``Bound``. During a batch (the executor moves an engine still
generating when the others of its wave are done) it only sends: the child rebinds between two
engine steps, and the batch's own reading of the pipe takes the reply, as every reading does
with a reply that comes late.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batching.engines._vllm_protocol import Bind, Bound, ErrorKind, Failed, FromChild, Ready, describe
from batching.spec import ExpertSpec, VLLMSource
from common.errors import EngineError

logger = logging.getLogger("batching.engines.vllm_engine")  # a part of the engine: its log

WORKER_EXTENSION = f"{__name__}.WorkerCores"
"""vLLM's ``worker_extension_cls`` that lets the child rebind the worker."""


class WorkerCores:
    """Mixed into vLLM's CPU worker class (``worker_extension_cls``); runs in the worker process.

    vLLM starts the worker with OpenMP's threads one to a core (``GOMP_CPU_AFFINITY``): the
    worker's main thread, which is OpenMP's first, on the first core with every other thread of
    the process, and OpenMP's i-th helper on the i-th core. A move keeps that layout on the new
    cores. Pinning every thread to the whole set instead lets the threads wander; measured here
    (SmolLM2 alone, one request): moved to one core and back to both it made 13-15 tokens/s,
    against 18-21 laid out one to a core as vLLM starts it."""

    _coe_team: list[int]

    def coe_bind(self, cpus: list[int]) -> tuple[int, list[int]]:
        """Compute on ``cpus`` from now on: as many torch threads, laid out one to a core.
        Returns (torch's thread count, the worker's cores) as they are now."""
        import torch

        if not hasattr(self, "_coe_team"):
            self._coe_team = _openmp_helpers()
        order = sorted(set(cpus))
        torch._C.set_num_threads(len(order))  # the real one: vLLM replaces torch.set_num_threads with a no-op
        torch.ones(1 << 18).add_(1).sum()  # a parallel region, so OpenMP's team has its threads now
        shared = len(self._coe_team) + 1 < len(order)  # started on fewer cores (not by VLLMEngine): let them share
        layout = {task: {order[(i + 1) % len(order)]} for i, task in enumerate(self._coe_team)}
        for task in map(int, os.listdir("/proc/self/task")):
            try:
                os.sched_setaffinity(task, set(order) if shared else layout.get(task, {order[0]}))
            except OSError:  # a thread that ended meanwhile
                continue
        return torch.get_num_threads(), order


def _openmp_helpers() -> list[int]:
    """The threads of this process that OpenMP pinned to a core of their own as the worker
    started (its helpers, in the order of their cores): every other thread shares the main
    thread's core."""
    home = os.sched_getaffinity(0)
    helpers: list[tuple[int, int]] = []
    for task in os.listdir("/proc/self/task"):
        try:
            mask = os.sched_getaffinity(int(task))
        except OSError:
            continue
        if len(mask) == 1 and mask != home:
            helpers.append((min(mask), int(task)))
    return [task for _, task in sorted(helpers)]


def bind(llm: Any, command: Bind) -> Bound | Failed:
    """Child side: rebind the worker of ``llm``; the reply to send to the parent."""
    try:
        replies = llm.collective_rpc("coe_bind", args=(list(command.cpus),))
        threads, cores = replies[0]
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return Failed(kind=ErrorKind.BIND, message=describe(exc))
    return Bound(cpus=tuple(cores), threads=threads)


class CoreBinding:
    """The ``bind`` of a ``VLLMEngine`` (``batching.engines.base.Binder``)."""

    spec: ExpertSpec
    source: VLLMSource
    cpus: tuple[int, ...] | None
    log_path: Path | None
    switch_timeout_s: float
    _conn: Any
    _ready: Ready | None

    if TYPE_CHECKING:

        @property
        def loaded(self) -> bool: ...

        def _receive(self, timeout_s: float | None, what: str) -> FromChild: ...

        def _cleanup(self) -> None: ...

    def _init_binding(self) -> None:
        self._generating = False  # a batch is in the child: a bind only sends
        self._unsure = False  # a bind sent during a batch failed: the cores are not known
        self._send_lock = threading.Lock()  # a batch's start and a bind from another thread

    def _start_batch(self, message: Any) -> None:
        """Send a batch; a bind from now until ``_generating`` is cleared does not wait."""
        with self._send_lock:
            self._conn.send(message)
            self._generating = True

    def _late_bind(self, reply: Any) -> bool:
        """Whether ``reply`` answers a bind sent during a batch (noted here, not the reader's)."""
        if isinstance(reply, Bound):
            logger.info(
                "%s computes on cores %s (%d threads)", self.spec.name, ",".join(map(str, reply.cpus)), reply.threads
            )
            return True
        if isinstance(reply, Failed) and reply.kind is ErrorKind.BIND:
            logger.warning("%s could not be moved during its batch: %s", self.spec.name, reply.message)
            self._unsure = True
            return True
        return False

    @property
    def can_bind(self) -> bool:
        """Loaded on a CPU with one worker: its cores can change without a reload."""
        ready = self._ready
        return self.loaded and ready is not None and ready.device == "cpu" and self.source.tensor_parallel_size == 1

    def bind(self, cpus: tuple[int, ...]) -> bool:
        """Compute on ``cpus`` (a subset of the cores this process may use) from the next batch on,
        or during a batch from its next step. Before a load it only sets the cores the load binds
        to. False where the engine cannot be rebound (a GPU, tensor parallelism). EngineError if
        the child failed to: the engine computes where it did unless the child died."""
        cpus = tuple(sorted(set(cpus)))
        allowed = os.sched_getaffinity(0)
        if not cpus or not set(cpus) <= allowed:
            raise EngineError(
                f"cannot bind {self.spec.name!r} to cores {list(cpus)}: this process may use {sorted(allowed)}"
            )
        if not self.loaded:
            self.cpus = cpus
            return True
        if not self.can_bind:
            return False
        if cpus == (self.cpus if self.cpus is not None else tuple(sorted(allowed))) and not self._unsure:
            return True
        started = time.perf_counter()
        try:
            with self._send_lock:
                self._conn.send(Bind(cpus=cpus))
                during = self._generating
            self.cpus, self._unsure = cpus, False
            if during:
                return True  # the batch's reading takes the reply
            reply = self._receive(self.switch_timeout_s, "bind")
            while isinstance(reply, Bound) and reply.cpus != cpus:  # a late reply to a bind sent during a batch
                reply = self._receive(self.switch_timeout_s, "bind")
        except (OSError, ValueError, EngineError) as exc:
            self._cleanup()
            raise EngineError(f"vLLM bind of {self.spec.name!r} failed: {exc}; log: {self.log_path}") from exc
        if not isinstance(reply, Bound):
            self._unsure = True
            text = reply.message if isinstance(reply, Failed) else f"unexpected {type(reply).__name__}"
            raise EngineError(f"vLLM bind of {self.spec.name!r} to cores {list(cpus)} failed: {text}")
        logger.info(
            "%s computes on cores %s (%d threads; %.0f ms)",
            self.spec.name,
            ",".join(map(str, reply.cpus)),
            reply.threads,
            (time.perf_counter() - started) * 1000,
        )
        return True
