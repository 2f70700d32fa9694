"""Warm engines: loaded models kept between runs of one session while they fit the budget.

An executor given a ``WarmEngines`` takes a model's engine from it when one for the same
expert is still loaded (no load), and hands engines back at the end of a phase instead of
unloading them. Before a phase loads models that are not warm, engines the phase does not use
make room, least recently used first, until the phase fits the memory budget beside what
stays. ``close()`` unloads everything; the SDK's ``Orchestrator`` does it on leaving ``with``.

Sleep mode. An engine whose kind can sleep (``batching.engines.kinds``) and that says it can now
(vLLM on a GPU) is put to sleep to make room instead of being unloaded: it frees its memory but
for ``asleep_share`` of its footprint (what the budget still counts for it; vLLM's level 1 keeps
the weights in host memory and a little on the GPU), and ``take`` wakes it instead of a load.
A wake that fails unloads the engine and ``take`` gives None: the caller loads it afresh.
Engines that cannot sleep are unloaded as before. ``asleep_budget_mb`` bounds the host memory
the parked models take (their full footprints): past it the longest-parked one is unloaded.

``preload`` fills the set before any run (a service's warm-up).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from batching.engines.base import Engine, EngineFactory, Sleeper, asleep, can_bind, can_sleep
from batching.engines.kinds import KINDS, engine_kind
from batching.engines.replay import index_recordings
from batching.spec import ExpertSpec
from common.errors import CoeError, EngineError, EngineLoadError

__all__ = ["Claim", "MadeEngines", "SleepCounts", "WarmEngines", "split_cores"]

log = logging.getLogger(__name__)

Taken = Literal["cold", "stale", "warm", "woken", "wake_failed"]


@dataclass(frozen=True)
class Claim:
    """What ``WarmEngines.claim`` found: the engine to use (None: load one) and how it came.

    ``cold``: none was held; ``stale``: one was held but did not match (unloaded); ``warm``: it
    was awake; ``woken``: it slept and was woken in ``seconds``; ``wake_failed``: it slept and
    did not wake (unloaded)."""

    engine: Engine | None
    how: Taken
    seconds: float = 0.0


@dataclass
class SleepCounts:
    """The session's sleeps and wakes so far."""

    sleeps: int = 0
    wakes: int = 0
    failed_sleeps: int = 0
    failed_wakes: int = 0
    sleep_seconds: float = 0.0
    wake_seconds: float = 0.0


def sleepable(engine: Engine) -> bool:
    """The registry lets the engine's kind sleep and the engine says it can now."""
    kind = KINDS.get(engine.spec.source.kind)
    return kind is not None and kind.sleep and can_sleep(engine)


class WarmEngines:
    """Loaded engines by expert name, with each one's footprint (MB), under ``budget_mb``.

    ``asleep_share``: the share of its footprint a sleeping engine still counts for (0 to 1).
    ``asleep_budget_mb``: the most the sleeping engines' footprints may add up to (None: no bound).
    """

    def __init__(
        self,
        budget_mb: float,
        sizes: Mapping[str, float],
        *,
        asleep_share: float = 0.0,
        asleep_budget_mb: float | None = None,
    ) -> None:
        if not 0.0 <= asleep_share <= 1.0:
            raise ValueError(f"asleep_share must lie in [0, 1], not {asleep_share}")
        self.budget_mb = budget_mb
        self.sizes = dict(sizes)
        self.asleep_share = asleep_share
        self.asleep_budget_mb = asleep_budget_mb
        self.counts = SleepCounts()
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # awake, least recently used first
        self._asleep: OrderedDict[str, Engine] = OrderedDict()  # asleep, longest parked first
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """The experts held awake (a sleeping one is not ready: taking it costs a wake)."""
        with self._lock:
            return list(self._engines)

    @property
    def sleeping(self) -> list[str]:
        """The experts held asleep."""
        with self._lock:
            return list(self._asleep)

    def held_mb(self) -> float:
        """What the held engines count for against the budget."""
        with self._lock:
            return self._held()

    def _held(self) -> float:
        awake = sum(self._size(n) for n in self._engines)
        return awake + self.asleep_share * sum(self._size(n) for n in self._asleep)

    def _size(self, name: str) -> float:
        return self.sizes.get(name, 0.0)

    def take(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Engine | None:
        """The loaded engine of this exact expert bound to ``cpus`` (or able to move there), if one
        is held (woken if it slept); it leaves the set until handed back. None: load one."""
        return self.claim(spec, cpus).engine

    def claim(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Claim:
        """``take``, saying how the engine came (for the caller's metrics)."""
        with self._lock:
            engine = self._engines.pop(spec.name, None)
            slept = engine is None and spec.name in self._asleep
            if slept:
                engine = self._asleep.pop(spec.name)
        if engine is None:
            return Claim(None, "cold")
        bound = getattr(engine, "cpus", None)  # only vLLM engines are bound to cores
        # other cores than this phase gives are no reason to reload one the executor can move (Binder)
        elsewhere = (bound is not None or cpus is not None) and bound != cpus and not can_bind(engine)
        # the pool entry changed, the engine died, or it is bound to other cores and cannot move
        if engine.spec != spec or not engine.loaded or elsewhere:
            engine.unload()
            return Claim(None, "stale")
        if not slept:
            return Claim(engine, "warm")
        started = time.perf_counter()
        try:
            cast(Sleeper, engine).wake()  # it slept, so it has the mode
            if not engine.loaded or asleep(engine):
                raise EngineError("it is not awake after wake()")
        except CoeError as exc:
            seconds = time.perf_counter() - started
            with self._lock:
                self.counts.failed_wakes += 1
            log.warning("warm session: %s did not wake (%s); unloading it, it will load afresh", spec.name, exc)
            engine.unload()
            return Claim(None, "wake_failed", seconds)
        seconds = time.perf_counter() - started
        with self._lock:
            self.counts.wakes += 1
            self.counts.wake_seconds += seconds
        log.info("warm session: woke %s in %.1fs", spec.name, seconds)
        return Claim(engine, "woken", seconds)

    def give_back(self, engine: Engine) -> bool:
        """Keep a loaded engine for the next run if it fits beside the others, or else asleep if it
        can sleep; False if it was not kept (the caller unloads it)."""
        name = engine.spec.name
        if not engine.loaded:
            return False
        with self._lock:
            if self._held() + self._size(name) <= self.budget_mb:
                self._engines[name] = engine
                return True
        return self._park(engine, "it does not fit awake")

    def make_room(self, needed_mb: float, keep: Collection[str]) -> None:
        """Free room for ``needed_mb`` more: engines not in ``keep`` (least recently used first) are
        put to sleep if they can, else unloaded; then sleeping ones that still count, unloaded."""
        while True:
            with self._lock:
                if self._held() + needed_mb <= self.budget_mb:
                    return
                awake = [n for n in self._engines if n not in keep]
                parked = [n for n in self._asleep if n not in keep and self.asleep_share * self._size(n) > 0]
                if awake:
                    engine = self._engines.pop(awake[0])
                elif parked:
                    engine = self._asleep.pop(parked[0])
                else:
                    return
            if awake and self._park(engine, "to make room"):
                continue
            log.info("warm session: unloading %s to make room", engine.spec.name)
            engine.unload()

    def preload(
        self, specs: Sequence[ExpertSpec], factory: EngineFactory, cores: tuple[int, ...] | None = None
    ) -> list[str]:
        """Load the engines of ``specs``, in order, that fit the budget awake beside those held
        before them, and keep them; recorded models of one file are indexed in one pass over it,
        and local models are bound to ``cores`` as the executor binds the models of one phase
        (``split_cores``). Returns the names kept. Models that could not be loaded are named in
        one ``EngineLoadError`` once the others are loaded."""
        chosen: list[ExpertSpec] = []
        with self._lock:
            held = self._held()
            for spec in specs:
                size = self._size(spec.name)
                if spec.name in self._engines or held + size > self.budget_mb:
                    continue
                chosen.append(spec)
                held += size
        index_recordings(chosen)
        bound = split_cores(cores, [s.name for s in chosen if engine_kind(s).local])
        kept: list[str] = []
        failed: list[str] = []
        for spec in chosen:
            cpus = bound.get(spec.name)
            try:
                engine = factory(spec) if cpus is None else factory(spec, cpus=cpus)
                engine.load()
            except CoeError as exc:
                log.warning("warm-up: could not load %s: %s", spec.name, exc)
                failed.append(f"{spec.name} ({exc})")
                continue
            if self.give_back(engine):
                kept.append(spec.name)
            else:
                engine.unload()
        if failed:
            raise EngineLoadError(f"could not load {'; '.join(failed)}")
        return kept

    def _park(self, engine: Engine, why: str) -> bool:
        """Put ``engine`` (held by no one) to sleep and keep it; False if it cannot sleep, does not
        fit, or failed to (the caller unloads it)."""
        name, size = engine.spec.name, self._size(engine.spec.name)
        if not sleepable(engine):
            return False
        evicted: list[Engine] = []
        with self._lock:
            others = [n for n in self._asleep if n != name]
            if self._held() + self.asleep_share * size > self.budget_mb:
                return False
            if self.asleep_budget_mb is not None:
                if size > self.asleep_budget_mb:
                    return False
                while others and sum(self._size(n) for n in others) + size > self.asleep_budget_mb:
                    evicted.append(self._asleep.pop(others.pop(0)))
        for old in evicted:
            log.info("warm session: unloading %s, asleep longest, to park %s", old.spec.name, name)
            old.unload()
        started = time.perf_counter()
        try:
            slept = cast(Sleeper, engine).sleep()  # sleepable: it has the mode
        except CoeError as exc:
            with self._lock:
                self.counts.failed_sleeps += 1
            log.warning("warm session: %s could not sleep (%s); unloading it", name, exc)
            return False
        if not slept:
            return False
        seconds = time.perf_counter() - started
        with self._lock:
            self._asleep[name] = engine
            self.counts.sleeps += 1
            self.counts.sleep_seconds += seconds
        log.info("warm session: %s sleeps (%s; %.1fs)", name, why, seconds)
        return True

    def close(self) -> None:
        """Unload every held engine, sleeping ones too."""
        with self._lock:
            engines = [*self._engines.values(), *self._asleep.values()]
            self._engines.clear()
            self._asleep.clear()
        for engine in engines:
            engine.unload()


class MadeEngines:
    """The engines ``factory`` made, while they live: which sleep now (a service's gauge, its live page)."""

    def __init__(self, factory: EngineFactory) -> None:
        self._factory = factory
        self._made: weakref.WeakSet[Engine] = weakref.WeakSet()

    def factory(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Engine:
        """``factory``'s engine of ``spec``, remembered."""
        engine = self._factory(spec) if cpus is None else self._factory(spec, cpus=cpus)
        self._made.add(engine)
        return engine

    def sleeping(self) -> int:
        return sum(asleep(engine) for engine in list(self._made))

    def asleep(self) -> list[str]:
        """The experts whose engines sleep now."""
        return sorted({engine.spec.name for engine in list(self._made) if asleep(engine)})


def split_cores(cores: tuple[int, ...] | None, local: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Disjoint core sets for co-resident local models (none to give when one is alone, or when
    ``cores`` is None: binding is then left to the engines). A model's cores depend on the set of
    models, not their order: a warm-up binds them as any phase holding the same models will."""
    if cores is None or len(local) < 2:
        return {}
    share = max(1, len(cores) // len(local))
    return {m: tuple(cores[(i * share + c) % len(cores)] for c in range(share)) for i, m in enumerate(sorted(local))}
