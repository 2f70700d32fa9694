"""An engine whose model lives in a Ray actor (``batching.ray_host.EngineHost``), seen from the
driver as any other ``Engine``: the executor loads it, hands it a model's batch, unloads it.

``load`` starts the actor where the run's placement puts it and loads the engine there.
``generate`` feeds the actor the batch in chunks of ``batch_size`` requests and hands on each
delta and result the moment it comes back, so the executor checkpoints every generation from
the driver as it arrives. A lost actor (killed, its node gone, its process crashed) loses only
the requests it had in flight: the engine starts a replacement and sends them again, split in
halves so that a request that kills its actor takes fewer others down with it, and one by one
on their last chance. Each request is sent again at most ``max_retries`` times; after that, or
when no replacement can be started, it comes back failed with the reason, never dropped. An
error the engine itself raises is raised here as it would be locally, after the results that
came before it were handed on.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from batching.engines.base import DeltaCallback, EngineFactory, ResultCallback
from batching.ray_host import EngineHost
from batching.spec import ExpertSpec
from common.errors import CoeError, EngineError, EngineLoadError
from common.requests import Generation, Request

__all__ = ["ActorEngine", "ActorPolicy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorPolicy:
    """How actors are fed and replaced."""

    batch_size: int = 64
    """Requests per call to an actor: what a lost actor can lose at most, besides a slow start."""
    max_retries: int = 2
    """Times a request lost with its actor is sent again before it is failed."""
    place_timeout_s: float = 300.0
    """How long an actor may wait for a node with the resources it asks for."""


LOAD_ATTEMPTS = 8
"""Actors started for one load before it fails: a node that died leaves its actors dead for the
few seconds the cluster takes to notice."""


class _Lost(Exception):
    """The actor (or its node) is gone; the requests it had in flight were not answered."""


def _resend(lost: list[int], sent: list[int], max_retries: int) -> list[list[int]]:
    """How lost requests are sent again: in two halves, so that a request that kills its actor
    takes fewer others with it each time; on their last chance, one by one."""
    last = [i for i in lost if sent[i] >= max_retries]
    rest = [i for i in lost if sent[i] < max_retries]
    middle = (len(rest) + 1) // 2
    return [part for part in (rest[:middle], rest[middle:]) if part] + [[i] for i in last]


@cache
def _remote_host() -> Any:
    """``EngineHost`` as a Ray actor class (made once per process)."""
    import ray

    return ray.remote(EngineHost)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException, last: bool = False) -> str:
    """The exception as one line: its class and the first (or last) line of its message."""
    lines = [line for line in _ANSI.sub("", str(exc)).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {(lines[-1] if last else lines[0]).strip() if lines else ''}".strip()


class ActorEngine:
    """The driver's handle on one engine replica in a Ray actor.

    ``options`` are the actor's Ray options (resources, scheduling); ``on_start(handle)`` hears
    each actor started (the executor kills what is left at the end of a run), ``on_placed(model,
    where)`` where it loaded, ``on_retry(n)`` each time ``n`` requests are sent again; once
    ``closed()`` (the run ended or was interrupted) no actor is started."""

    def __init__(
        self,
        spec: ExpertSpec,
        factory: EngineFactory,
        options: dict[str, Any],
        policy: ActorPolicy,
        *,
        on_start: Callable[[Any], None] = lambda actor: None,
        on_placed: Callable[[str, dict[str, str]], None] = lambda model, where: None,
        on_retry: Callable[[int], None] = lambda n: None,
        closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.spec = spec
        self.factory = factory
        self.options = options
        self.policy = policy
        self.on_start = on_start
        self.on_placed = on_placed
        self.on_retry = on_retry
        self.closed = closed
        self.actor: Any = None
        self.where: dict[str, str] = {}
        self._ready = False  # the actor's engine is loaded
        self._busy = False  # a batch is in flight (unload then kills at once)

    @property
    def loaded(self) -> bool:
        return self.actor is not None and self._ready

    def load(self) -> None:
        """Start the actor (if none) and load the engine in it. An actor lost while loading (its node
        died, the cluster is rescheduling) is replaced, ``LOAD_ATTEMPTS`` times at most, within
        ``place_timeout_s``; an actor that cannot start at all, or an engine that cannot load,
        raises at once."""
        import ray

        if self.loaded:
            return
        deadline = time.monotonic() + self.policy.place_timeout_s
        lost: BaseException | None = None
        for attempt in range(LOAD_ATTEMPTS):
            if self.actor is None:
                if self.closed():
                    raise EngineLoadError(f"{self.spec.name!r}: the run was stopped; no actor is started")
                self.actor = _remote_host().options(**self.options).remote(self.factory, self.spec)
                self.on_start(self.actor)
            try:
                where, error = ray.get(self.actor.load.remote(), timeout=max(deadline - time.monotonic(), 1.0))
            except ray.exceptions.GetTimeoutError as exc:
                self._drop()
                asked = {k: v for k, v in self.options.items() if k in ("num_cpus", "num_gpus", "resources")}
                raise EngineLoadError(
                    f"no node of the Ray cluster took {self.spec.name!r} within {self.policy.place_timeout_s:g} s "
                    f"(it asks for {asked})"
                ) from exc
            except ray.exceptions.RayError as exc:  # the actor or its node died while it loaded
                self._drop()
                if getattr(exc, "actor_init_failed", False):  # not a loss: it cannot start anywhere
                    raise EngineLoadError(
                        f"the Ray actor of {self.spec.name!r} could not start ({_first_line(exc, last=True)}); "
                        "every node needs this project installed"
                    ) from exc
                lost = exc
                log.warning("%s: its Ray actor was lost while loading (%s)", self.spec.name, _first_line(exc))
                time.sleep(min(0.5 * 2**attempt, 5.0, max(deadline - time.monotonic(), 0.0)))
                continue
            if error is not None:
                raise error
            self._ready = True
            self.where = where
            self.on_placed(self.spec.name, where)
            return
        assert lost is not None
        raise EngineLoadError(
            f"{self.spec.name!r}: its Ray actor was lost {LOAD_ATTEMPTS} times while loading ({_first_line(lost)})"
        )

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """Answer every request (see the module's docstring); the list is complete and in order."""
        if not self.loaded:
            raise EngineError(f"engine {self.spec.name!r} asked to generate before load()")
        out: list[Generation | None] = [None] * len(requests)
        sent = [0] * len(requests)  # times each request was lost with an actor
        size = self.policy.batch_size
        todo = deque(list(range(start, min(start + size, len(requests)))) for start in range(0, len(requests), size))

        def settle(index: int, generation: Generation) -> None:
            out[index] = generation
            if on_result is not None:
                on_result(index, generation)

        self._busy = True
        try:
            while todo:
                chunk = todo.popleft()
                if not self.loaded:  # the last actor was lost: a replacement
                    try:
                        self.load()
                    except CoeError as exc:
                        reason = f"no replacement for its lost Ray actor could start: {exc}"
                        for index in [i for part in (chunk, *todo) for i in part if out[i] is None]:
                            settle(index, self._failed(requests[index], reason))
                        break
                try:
                    self._chunk(chunk, requests, settle, on_delta)
                except _Lost as lost:
                    self._drop()
                    again = []
                    for index in (i for i in chunk if out[i] is None):
                        sent[index] += 1
                        if sent[index] <= self.policy.max_retries:
                            again.append(index)
                        else:
                            reason = f"lost with its Ray actor {sent[index]} times (last: {lost}); not sent again"
                            settle(index, self._failed(requests[index], reason))
                    log.warning(
                        "%s: its Ray actor was lost (%s); %d request(s) in flight sent again",
                        self.spec.name,
                        lost,
                        len(again),
                    )
                    if again:
                        self.on_retry(len(again))
                        todo.extendleft(reversed(_resend(again, sent, self.policy.max_retries)))
        finally:
            self._busy = False
        assert all(g is not None for g in out)
        return [g for g in out if g is not None]

    def _chunk(
        self,
        chunk: list[int],
        requests: Sequence[Request],
        settle: Callable[[int, Generation], None],
        on_delta: DeltaCallback | None,
    ) -> None:
        """One call to the actor: hand on its events as they come; raise ``_Lost`` if it is lost,
        the engine's error if it raised one."""
        import ray

        stream = iter(self.actor.generate.remote([requests[i] for i in chunk], on_delta is not None))
        while True:
            try:
                events = ray.get(next(stream))
            except StopIteration:
                raise _Lost("its stream ended early") from None
            except ray.exceptions.RayTaskError as exc:  # the host's own code failed: a bug, not a loss
                self._ready = False
                raise EngineError(f"the Ray actor of {self.spec.name!r} failed: {_first_line(exc)}") from exc
            except ray.exceptions.RayError as exc:
                raise _Lost(_first_line(exc)) from exc
            for kind, first, second in events:
                if kind == "delta" and on_delta is not None:
                    on_delta(chunk[first], second)
                elif kind == "result":
                    settle(chunk[first], second)
                elif kind == "end":
                    self._ready = bool(first)
                    if second is not None:
                        raise second
                    return

    def _failed(self, request: Request, reason: str) -> Generation:
        return Generation(request_id=request.id, model=self.spec.name, error=reason, error_type="EngineError")

    def _drop(self) -> None:
        """Forget the actor, killing it if it still runs."""
        import ray

        actor, self.actor, self._ready = self.actor, None, False
        if actor is not None:
            ray.kill(actor)

    def unload(self) -> None:
        """Unload the engine and end its actor (at once while a batch is in flight: an interrupt)."""
        import ray

        if self.actor is not None and self._ready and not self._busy:
            try:
                ray.get(self.actor.unload.remote(), timeout=60)
            except ray.exceptions.RayError as exc:
                log.info("%s: its Ray actor did not unload cleanly (%s)", self.spec.name, _first_line(exc))
        self._drop()

    def footprint_mb(self) -> float | None:
        import ray

        if self.actor is not None and self._ready:
            try:
                return ray.get(self.actor.footprint_mb.remote(), timeout=60)
            except ray.exceptions.RayError:
                pass
        return self.spec.memory_mb
