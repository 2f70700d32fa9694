"""The executor: runs a ``Plan`` phase by phase, one batch per model per wave.

Per phase: load its models (co-resident ones in parallel threads), then in waves hand each
model the whole list of its ready requests in one ``engine.generate`` call (with ``cores``, the
local engines of a wave share them, and a batch that ends hands its cores to those still
running: a model generating alone gets every core but one, left to vLLM's engine process);
tasks composed from inputs (aggregation) become ready once their inputs are resolved. Each generation goes
to the run store the moment its engine reports it finished, keyed by what was asked
(``request_key``); before a phase loads anything, its tasks whose request is already stored
are resolved from the store (resume). A store that cannot be written stops the run. An engine
that fails mid-phase is reloaded once and its unfinished requests retried; requests that
still fail are isolated by halving the batch and marked failed with the reason. At the end
of a phase each engine is unloaded, or handed back to a warm session (``WarmEngines``) that
keeps it while it fits. Phases on different devices run in parallel threads; a model may
appear in phases on several devices (replicas, each its own load serving its share of the
model's tasks), and a phase waits for the phases of other devices it names in ``after``.
The result holds every task's generation and, for composed tasks, the ``Composed`` record of
what went into their request.

With a generation cache (``batching.cache``), a task whose request was answered before, in any
run, is resolved from it the same way: looked up after the run store, before a phase loads
anything, and again as each wave's composed requests are made; a phase whose tasks all hit
loads nothing. Each model's finished batch is written to the cache in one call. Requests that
ask for a fresh sample (temperature above 0, no seed) are neither read nor written;
``cache_reads=False`` only writes (a refresh). A cache that cannot be reached stops the run
with its ``Unavailable`` error.

Two hooks for a service: ``on_delta(task id, text)`` hears each task's text as its engine
generates it (``batching.deltas``); ``skip(task)`` names a reason not to run a task (its caller
went away), asked when its phase starts (before any load) and as each wave builds its requests:
a skipped task is failed with that reason and never reaches an engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from batching.cache import GenerationCache
from batching.deltas import DeltaListener, DeltaRelay
from batching.engine_calls import EngineCalls
from batching.engines.base import Engine, EngineFactory
from batching.engines.kinds import engine_kind
from batching.plan import Phase, Plan
from batching.results import ProgressCallback, ProgressEvent, RunMetrics, RunResult
from batching.reuse import Reuse
from batching.run_state import RunState, union
from batching.runstore import RunStore
from batching.spec import ExpertSpec
from batching.warm import WarmEngines
from common import tracing
from common.errors import BadInput, CoeError
from common.names import unknown_name
from common.requests import Generation, Request
from common.tasks import Compose, Composed, Task

__all__ = ["Executor", "ProgressCallback", "ProgressEvent", "RunMetrics", "RunResult"]

log = logging.getLogger(__name__)


class Executor(EngineCalls, Reuse):
    """Runs plans on engines made by ``engine_factory``; checkpoints into ``store`` if given, and
    answers from (and fills) the generation ``cache`` if given."""

    def __init__(
        self,
        engine_factory: EngineFactory,
        store: RunStore | None = None,
        progress: ProgressCallback | None = None,
        warm: WarmEngines | None = None,
        cores: tuple[int, ...] | None = None,
        *,
        on_delta: DeltaListener | None = None,
        skip: Callable[[Task], str | None] | None = None,
        cache: GenerationCache | None = None,
        cache_reads: bool = True,
    ) -> None:
        self.engine_factory = engine_factory
        self.store = store
        self.cache = cache  # generations of earlier runs by request key; written as batches finish
        self.cache_reads = cache_reads  # False: never answer from the cache, still write it (refresh)
        self.progress = progress
        self.warm = warm  # a warm session: engines stay loaded between runs while they fit
        # CPU cores to split between co-resident local (vLLM) models, each factory call then
        # getting ``cpus=``, and before each wave between the local engines generating in it (a
        # lone one gets all but one; ``Binder``); None leaves binding to the engines
        self.cores = cores
        self.on_delta = on_delta  # (task id, new text) as engines generate; engines stream only if set
        self.skip = skip  # a reason not to run a task (checked before loads and per wave), or None

    # -- public -------------------------------------------------------------------------------

    def run(
        self,
        plan: Plan,
        tasks: Sequence[Task],
        specs: Mapping[str, ExpertSpec],
        compose: Compose,
        *,
        run_id: str = "run",
    ) -> RunResult:
        """Run every task of ``plan``. With a store, a task whose request (model source, prompt,
        sampling) already has a generation stored under ``run_id`` is not run again."""
        by_id = {t.id: t for t in tasks}
        planned = plan.phase_of()
        served = Counter(tid for phase in plan.phases for tid in phase.tasks)
        twice = sorted(tid for tid, n in served.items() if n > 1)[:3]
        if twice:
            raise BadInput(f"plan serves tasks more than once: {twice}")
        if len(by_id) != len(tasks) or set(by_id) != set(planned):
            extra = sorted(set(by_id) - set(planned))[:3]
            missing = sorted(set(planned) - set(by_id))[:3]
            raise BadInput(f"plan does not match the tasks (not planned: {extra}; unknown: {missing})")
        for task in tasks:
            if task.model not in specs:
                raise unknown_name("model", task.model, specs)
        state = RunState(run_id, by_id, DeltaRelay(self.on_delta) if self.on_delta is not None else None)
        state.phase_of = {tid: index for tid, index in planned.items()}
        started = time.perf_counter()
        state.done = {p.index: threading.Event() for p in plan.phases}
        per_device: dict[int, list[Phase]] = {}
        for phase in plan.phases:
            per_device.setdefault(phase.device, []).append(phase)
        if len(per_device) <= 1:
            for phase in plan.phases:
                self._phase(phase, state, specs, compose)
        else:
            threads = [
                threading.Thread(
                    target=tracing.carried(self._device, phases, state, specs, compose), name=f"device-{d}"
                )
                for d, phases in sorted(per_device.items())
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if state.abort is not None:
                raise state.abort
        metrics = state.metrics
        metrics.wall_seconds = time.perf_counter() - started
        metrics.engine_seconds = union(state.intervals)
        metrics.overhead_seconds = metrics.wall_seconds - metrics.engine_seconds
        metrics.failed = len(state.failed)
        ordered = {tid: state.results[tid] for tid in by_id if tid in state.results}
        return RunResult(
            run_id=run_id,
            generations=ordered,
            failed=dict(state.failed),
            composed=dict(state.composed),
            cached=set(state.cached),
            metrics=metrics,
        )

    # -- phases -------------------------------------------------------------------------------

    def _device(self, phases: list[Phase], state: RunState, specs, compose) -> None:
        try:
            for phase in phases:
                for before in phase.after:
                    state.done[before].wait()
                if state.abort is not None:
                    return
                self._phase(phase, state, specs, compose)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises
            state.abort = exc
            for event in state.done.values():
                event.set()

    def _phase(self, phase: Phase, state: RunState, specs: Mapping[str, ExpertSpec], compose: Compose) -> None:
        try:
            pending = [tid for tid in phase.tasks if not state.resolved(tid) and not self._skipped(tid, state)]
            if (self.store is not None or self._reading) and pending:
                self._from_store(pending, state, specs, compose)
                pending = [tid for tid in pending if not state.resolved(tid)]
            pending = [tid for tid in pending if not self._inputs_failed(state.tasks[tid], state)]
            if not pending:
                log.info("phase %d: every task already finished or skipped; nothing to load", phase.index)
                with state.lock:
                    state.metrics.phases_skipped += 1
                self._emit(ProgressEvent(kind="phase_skipped", phase=phase.index, device=phase.device))
                return
            started = time.perf_counter()
            models = list(dict.fromkeys(state.tasks[tid].model for tid in pending))
            log.info(
                "phase %d on device %d: %s, %d task(s)",
                phase.index,
                phase.device,
                ", ".join(models),
                len(pending),
            )
            self._emit(ProgressEvent(kind="phase_start", phase=phase.index, device=phase.device, total=len(pending)))
            traced = {
                "coe.phase": phase.index,
                "coe.device": phase.device,
                "coe.models": models,
                "coe.tasks": len(pending),
            }
            with tracing.span("coe.phase", traced):
                self._phase_run(phase, pending, models, state, specs, compose)
            seconds = time.perf_counter() - started
            with state.lock:
                state.metrics.phases_run += 1
                failed = sum(1 for t in pending if t in state.failed)
            log.info("phase %d done in %.1fs: %d task(s), %d failed", phase.index, seconds, len(pending), failed)
            self._emit(
                ProgressEvent(
                    kind="phase_done",
                    phase=phase.index,
                    device=phase.device,
                    done=len(pending),
                    total=len(pending),
                    failed=failed,
                    seconds=seconds,
                )
            )
        finally:
            state.done[phase.index].set()

    def _phase_run(
        self,
        phase: Phase,
        pending: list[str],
        models: list[str],
        state: RunState,
        specs: Mapping[str, ExpertSpec],
        compose: Compose,
    ) -> None:
        """Load the phase's models, run its waves, and release its engines (unloaded at once on Ctrl-C)."""
        engines: dict[str, Engine] = {}
        pool = ThreadPoolExecutor(max_workers=len(models), thread_name_prefix=f"phase{phase.index}")
        interrupted = False
        try:
            self._waves(phase, pending, models, engines, pool, state, specs, compose)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if interrupted:  # stop now: unload from here, wait for no batch in flight
                log.warning("phase %d interrupted: unloading %s", phase.index, ", ".join(engines) or "nothing")
                for engine in engines.values():
                    engine.unload()
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                list(pool.map(lambda e: self._release(e, state), list(engines.values())))
                pool.shutdown()

    def _waves(
        self,
        phase: Phase,
        to_run: list[str],
        models: list[str],
        engines: dict[str, Engine],
        pool: ThreadPoolExecutor,
        state: RunState,
        specs: Mapping[str, ExpertSpec],
        compose: Compose,
    ) -> None:
        """Load the phase's models, then run its tasks wave by wave, one batch per model per wave.
        A model whose every task waits on this phase's other tasks (an aggregator beside its
        experts) is loaded only when its first task is ready: never, when all its inputs failed."""
        broken: dict[str, str] = {}
        reloaded: set[str] = set()
        if self.warm is not None:
            cold = [m for m in models if m not in self.warm.names]
            self.warm.make_room(sum(self.warm.sizes.get(m, 0.0) for m in cold), keep=models)
        totals = Counter(state.tasks[tid].model for tid in to_run)
        with state.lock:
            state.arrived.update({(phase.index, m): (0, totals[m], 0) for m in models})
        cpus = self._split_cores([m for m in models if engine_kind(specs[m]).local])
        waiting = set(to_run)
        ready_now = {state.tasks[t].model for t in to_run if not any(d in waiting for d in state.tasks[t].after)}
        self._load_models(
            [m for m in models if m in ready_now], phase, totals, cpus, engines, broken, pool, state, specs
        )
        pending = list(to_run)
        while pending:
            ready = [tid for tid in pending if all(state.resolved(d) for d in state.tasks[tid].after)]
            if not ready:
                raise BadInput(f"phase {phase.index}: tasks {pending[:3]} wait on inputs no earlier phase made")
            asked: dict[str, tuple[Request, ExpertSpec]] = {}
            for tid in ready:
                task = state.tasks[tid]
                request = self._request(task, state, compose, broken)
                if request is not None:
                    asked[tid] = (request, specs[task.model])
            fresh = {tid: one for tid, one in asked.items() if tid not in state.looked}
            with state.lock:
                state.looked.update(fresh)
            hits = self._from_cache(fresh, state)  # composed during this phase: not looked up before
            batches: dict[str, list[tuple[str, Request]]] = {}
            for tid, (request, _) in asked.items():
                if tid not in hits:
                    batches.setdefault(state.tasks[tid].model, []).append((tid, request))
            cold = [m for m in batches if m not in engines and m not in broken]
            if cold:  # models whose tasks waited on this phase's others: loaded now that they have work
                self._load_models(cold, phase, totals, cpus, engines, broken, pool, state, specs)
                for model in [m for m in cold if m in broken]:
                    for tid, _ in batches.pop(model):
                        self._fail(state.tasks[tid], broken[model], state)
            self._bind_wave(list(batches), engines, specs)
            jobs = {
                pool.submit(tracing.carried(self._batch, model, engines[model], items, state, reloaded)): model
                for model, items in batches.items()
            }
            running = set(jobs.values())
            for batch in as_completed(jobs):
                model = batch.result()
                running.discard(model)
                if running:  # its cores go to the batches still running, from their next step
                    self._bind_wave(sorted(running, key=list(batches).index), engines, specs)
                self._batch_done(phase, model, to_run, state)
            finished = set(ready)
            pending = [tid for tid in pending if tid not in finished]

    def _skipped(self, task_id: str, state: RunState) -> bool:
        """Whether ``skip`` names a reason not to run the task (then recorded as its failure)."""
        reason = self.skip(state.tasks[task_id]) if self.skip is not None else None
        if reason is not None:
            self._fail(state.tasks[task_id], reason, state)
        return reason is not None

    def _request(self, task: Task, state: RunState, compose: Compose, broken: Mapping[str, str]) -> Request | None:
        """The task's request, or None after recording why it cannot run."""
        if self._skipped(task.id, state):
            return None
        if task.model in broken:
            self._fail(task, broken[task.model], state)
            return None
        if not task.after:
            return task.request
        if task.id in state.composed:  # composed already while looking in the store
            return state.composed[task.id].request
        if self._inputs_failed(task, state):
            return None
        inputs = {d: state.results[d] for d in task.after}  # failed ones too: compose notes why
        try:
            composed = compose(task, inputs)
        except CoeError as exc:
            self._fail(task, f"could not compose its request: {exc}", state)
            return None
        with state.lock:
            state.composed[task.id] = composed
        if composed.skipped is not None:
            self._settle_agreed(task, composed, inputs, state)
            return None
        return composed.request

    def _settle_agreed(self, task: Task, composed: Composed, inputs: Mapping[str, Generation], state: RunState) -> None:
        """A task whose inputs agree needs no model: the agreeing input's answer stands as its own."""
        stands = inputs[composed.stands] if composed.stands is not None else None
        generation = Generation(
            request_id=composed.request.id,
            model=task.model,
            text=stands.text if stands is not None else "",
            answer=stands.answer if stands is not None else None,
            finish_reason="skipped",
        )
        with state.lock:
            state.record(task.id, generation)
            state.metrics.skipped += 1
        log.debug("task %s: not run (%s)", task.id, composed.skipped)

    def _inputs_failed(self, task: Task, state: RunState) -> bool:
        """Whether every input of a dependent task is in and failed (then it is recorded as failed,
        so its model is not loaded for nothing)."""
        if not task.after or not all(state.resolved(d) for d in task.after):
            return False
        if any(state.results[d].ok for d in task.after):
            return False
        reasons = "; ".join(f"{d}: {state.failed.get(d, '?')}" for d in task.after)
        self._fail(task, f"every input failed ({reasons})", state)
        return True

    def _fail(self, task: Task, reason: str, state: RunState) -> None:
        request_id = task.request.id if task.request is not None else task.id
        with state.lock:
            state.record(task.id, Generation(request_id=request_id, model=task.model, error=reason))
        log.info("task %s failed: %s", task.id, reason)

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)
