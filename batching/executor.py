"""The executor: runs a ``Plan`` phase by phase, one batch per model per wave.

Per phase: load its models (co-resident ones in parallel threads), then in waves hand each
model the whole list of its ready requests in one ``engine.generate`` call; tasks composed
from inputs (aggregation) become ready once their inputs are resolved. Each generation goes
to the run store the moment its engine reports it finished, keyed by what was asked
(``request_key``); before a phase loads anything, its tasks whose request is already stored
are resolved from the store (resume). A store that cannot be written stops the run. An engine
that fails mid-phase is reloaded once and its unfinished requests retried; requests that
still fail are isolated by halving the batch and marked failed with the reason. At the end
of a phase each engine is unloaded, or handed back to a warm session (``WarmEngines``) that
keeps it while it fits. Phases on different devices run in parallel threads.
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
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

from batching.cache import GenerationCache, cacheable
from batching.deltas import DeltaListener, DeltaRelay
from batching.engines.base import Engine, EngineFactory
from batching.plan import Phase, Plan
from batching.results import ProgressCallback, ProgressEvent, RunMetrics, RunResult
from batching.run_state import RunState, StoreFailed, union
from batching.runstore import RunStore, request_key
from batching.spec import ExpertSpec
from batching.warm import WarmEngines, split_cores
from common.errors import BadInput, CoeError, EngineError
from common.names import unknown_name
from common.requests import Generation, Request
from common.tasks import Compose, Task

__all__ = ["Executor", "ProgressCallback", "ProgressEvent", "RunMetrics", "RunResult"]

log = logging.getLogger(__name__)


class Executor:
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
        # getting ``cpus=``; None leaves binding to the engines (a lone engine takes every core)
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
                threading.Thread(target=self._device, args=(phases, state, specs, compose), name=f"device-{d}")
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
            engines: dict[str, Engine] = {}
            with ThreadPoolExecutor(max_workers=len(models), thread_name_prefix=f"phase{phase.index}") as pool:
                try:
                    self._waves(phase, pending, models, engines, pool, state, specs, compose)
                finally:
                    list(pool.map(lambda e: self._release(e, state), list(engines.values())))
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
        """Load the phase's models, then run its tasks wave by wave, one batch per model per wave."""
        broken: dict[str, str] = {}
        reloaded: set[str] = set()
        if self.warm is not None:
            cold = [m for m in models if m not in self.warm.names]
            self.warm.make_room(sum(self.warm.sizes.get(m, 0.0) for m in cold), keep=models)
        totals = Counter(state.tasks[tid].model for tid in to_run)
        with state.lock:
            state.arrived.update({m: (0, totals[m], 0) for m in models})
        for model in models:
            self._emit(
                ProgressEvent(
                    kind="model_loading", phase=phase.index, device=phase.device, model=model, total=totals[model]
                )
            )
        cpus = self._split_cores([m for m in models if specs[m].source.kind == "vllm"])
        loads = [pool.submit(self._load, m, specs[m], state, cpus.get(m)) for m in models]
        wait(loads)  # every engine that did load is registered (and so released) before any error is raised
        loaded = {m: job.result() for m, job in zip(models, loads, strict=True) if job.exception() is None}
        engines.update({m: engine for m, (engine, _, _) in loaded.items() if engine is not None})
        for job in loads:
            job.result()  # a load that crashed outright ends the phase now
        for model in models:
            _, error, seconds = loaded[model]
            if error is not None:
                broken[model] = error
            self._emit(
                ProgressEvent(
                    kind="model_loaded",
                    phase=phase.index,
                    device=phase.device,
                    model=model,
                    total=totals[model],
                    failed=totals[model] if error else 0,
                    seconds=seconds,
                )
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
            jobs = [
                pool.submit(self._batch, model, engines[model], items, state, reloaded)
                for model, items in batches.items()
            ]
            for batch in jobs:
                model = batch.result()
                mine = [t for t in to_run if state.tasks[t].model == model]
                with state.lock:
                    done = sum(1 for t in mine if state.resolved(t))
                    failed = sum(1 for t in mine if t in state.failed)
                    tokens = sum(state.results[t].tokens_out for t in mine if t in state.results)
                self._emit(
                    ProgressEvent(
                        kind="generated",
                        phase=phase.index,
                        device=phase.device,
                        model=model,
                        done=done,
                        total=len(mine),
                        failed=failed,
                        tokens=tokens,
                    )
                )
            finished = set(ready)
            pending = [tid for tid in pending if tid not in finished]

    @property
    def _reading(self) -> bool:
        return self.cache is not None and self.cache_reads

    def _from_store(
        self, pending: list[str], state: RunState, specs: Mapping[str, ExpertSpec], compose: Compose
    ) -> None:
        """Resolve the phase's tasks whose request already has a stored generation (the run's
        checkpoint, else the cache), before any model loads: wave by wave, since a composed task's
        request is known once its inputs are. Each task is looked up once."""
        left = list(pending)
        while True:
            ready = [
                tid
                for tid in left
                if tid not in state.looked and all(state.resolved(d) for d in state.tasks[tid].after)
            ]
            if not ready:
                return
            asked: dict[str, tuple[Request, ExpertSpec]] = {}
            for tid in ready:
                request = self._request(state.tasks[tid], state, compose, {})
                if request is not None:
                    asked[tid] = (request, specs[state.tasks[tid].model])
            with state.lock:
                state.looked.update(ready)
            found: dict[str, Generation] = {}
            if self.store is not None:
                keys = {tid: request_key(spec, request) for tid, (request, spec) in asked.items()}
                stored = self.store.get_many(state.run_id, keys.values())
                found = {tid: stored[key] for tid, key in keys.items() if key in stored}
                with state.lock:
                    for tid, generation in found.items():
                        state.record(tid, generation)
                    state.metrics.resumed += len(found)
                if found:
                    log.info("run %s: %d task(s) found finished in the store", state.run_id, len(found))
            hits = self._from_cache({tid: one for tid, one in asked.items() if tid not in found}, state)
            left = [tid for tid in left if not state.resolved(tid)]
            if not found and not hits:
                return

    def _from_cache(self, asked: Mapping[str, tuple[Request, ExpertSpec]], state: RunState) -> set[str]:
        """Resolve the tasks whose request the cache has answered before; returns them. Requests
        that ask for a fresh sample are not looked up."""
        if not self._reading or not asked:
            return set()
        assert self.cache is not None
        keys = {
            tid: request_key(spec, request)
            for tid, (request, spec) in asked.items()
            if cacheable(request.sampling(spec.sampling))
        }
        if not keys:
            return set()
        cached = self.cache.get_many(keys.values())
        hits = {
            tid: cached[key].model_copy(update={"request_id": asked[tid][0].id})
            for tid, key in keys.items()
            if key in cached
        }
        with state.lock:
            for tid, generation in hits.items():
                state.record(tid, generation)
            state.cached.update(hits)
            state.metrics.cache_hits += len(hits)
            state.metrics.cache_misses += len(keys) - len(hits)
        if hits:
            log.info("run %s: %d of %d task(s) answered from the cache", state.run_id, len(hits), len(keys))
        return set(hits)

    def _to_cache(self, spec: ExpertSpec, items: list[tuple[str, Request]], out: Mapping[str, Generation]) -> None:
        """Write a model's finished batch to the cache in one call (fresh samples left out)."""
        if self.cache is None:
            return
        requests = dict(items)
        entries = {
            request_key(spec, requests[tid]): generation
            for tid, generation in out.items()
            if generation.ok and tid in requests and cacheable(requests[tid].sampling(spec.sampling))
        }
        if entries:
            self.cache.put_many(entries)

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
        return composed.request

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

    # -- engines ------------------------------------------------------------------------------

    @contextmanager
    def _timed(self, state: RunState, field: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            with state.lock:
                state.intervals.append((start, end))
                setattr(state.metrics, field, getattr(state.metrics, field) + end - start)

    def _split_cores(self, local: list[str]) -> dict[str, tuple[int, ...]]:
        """Disjoint core sets for co-resident local models (none to give when one is alone)."""
        return split_cores(self.cores, local)

    def _load(
        self, model: str, spec: ExpertSpec, state: RunState, cpus: tuple[int, ...] | None = None
    ) -> tuple[Engine | None, str | None, float]:
        """Load the model's engine (or take it warm); a failed load is tried once more. Returns the
        engine, the error if it could not be loaded, and the seconds it took."""
        started = time.perf_counter()
        engine, error = self._load_once_or_twice(model, spec, state, cpus)
        return engine, error, time.perf_counter() - started

    def _load_once_or_twice(
        self, model: str, spec: ExpertSpec, state: RunState, cpus: tuple[int, ...] | None
    ) -> tuple[Engine | None, str | None]:
        if self.warm is not None:
            warm = self.warm.take(spec, cpus)
            if warm is not None:
                log.info("%s: still loaded from the session's last run", model)
                return warm, None
        try:
            engine = self.engine_factory(spec) if cpus is None else self.engine_factory(spec, cpus=cpus)
        except CoeError as exc:
            log.warning("could not make an engine for %r: %s", model, exc)
            return None, f"could not make an engine for {model!r}: {exc}"
        error = None
        for attempt in (1, 2):
            try:
                with self._timed(state, "load_seconds"):
                    engine.load()
            except CoeError as exc:
                error = f"could not load {model!r}: {exc}"
                log.info("%s (attempt %d)", error, attempt)
                if not isinstance(exc, EngineError):
                    break
                continue
            with state.lock:
                state.metrics.loads += 1
                state.metrics.loads_per_model[model] = state.metrics.loads_per_model.get(model, 0) + 1
            return engine, None
        return engine, error

    def _release(self, engine: Engine, state: RunState) -> None:
        if self.warm is not None and self.warm.give_back(engine):
            return
        with self._timed(state, "unload_seconds"):
            engine.unload()

    def _batch(
        self, model: str, engine: Engine, items: list[tuple[str, Request]], state: RunState, reloaded: set[str]
    ) -> str:
        """Run one model's whole ready batch and store what finished; returns the model."""
        log.info("%s: generating %d request(s)", model, len(items))
        out: dict[str, Generation] | None
        try:
            out = self._call(engine, items, state)
        except StoreFailed as failed:
            raise failed.error from failed
        except EngineError as exc:
            out = None
            failure: CoeError = exc
            if model not in reloaded and not engine.loaded:  # the engine died: restart it once
                reloaded.add(model)
                log.warning(
                    "%s failed mid-phase (%s); reloading it and retrying %d request(s)",
                    model,
                    exc,
                    len(items),
                )
                with self._timed(state, "unload_seconds"):
                    engine.unload()
                try:
                    with self._timed(state, "load_seconds"):
                        engine.load()
                    with state.lock:
                        state.metrics.loads += 1
                        state.metrics.loads_per_model[model] = state.metrics.loads_per_model.get(model, 0) + 1
                    out = self._call(engine, items, state)
                except CoeError as again:
                    failure = again
            if out is None:
                out = self._isolate(engine, items, state, str(failure))
        except CoeError as exc:
            out = self._isolate(engine, items, state, str(exc))
        assert out is not None
        finished = {tid: g for tid, g in out.items() if g.ok}
        unsaved = {tid: g for tid, g in finished.items() if tid not in state.stored}
        if self.store is not None and unsaved:
            requests = dict(items)
            self.store.put(state.run_id, {request_key(engine.spec, requests[tid]): g for tid, g in unsaved.items()})
        self._to_cache(engine.spec, items, finished)
        with state.lock:
            for tid, generation in out.items():
                state.record(tid, generation)
            state.metrics.requests_per_model[model] = state.metrics.requests_per_model.get(model, 0) + len(items)
            state.metrics.tokens_in += sum(g.tokens_in for g in finished.values())
            state.metrics.tokens_out += sum(g.tokens_out for g in finished.values())
        for tid, generation in out.items():
            if not generation.ok:
                log.info("task %s failed on %s: %s", tid, model, generation.error)
        return model

    def _call(self, engine: Engine, items: list[tuple[str, Request]], state: RunState) -> dict[str, Generation]:
        requests = [request for _, request in items]
        model = engine.spec.name

        def arrived(index: int, generation: Generation) -> None:
            """Checkpoint each generation the moment it is finished, and say so."""
            task_id, request = items[index]
            if generation.ok and self.store is not None:
                try:
                    self.store.put(state.run_id, {request_key(engine.spec, request): generation})
                except CoeError as exc:  # not the engine's fault: the run stops, nothing is retried
                    raise StoreFailed(exc) from exc
            with state.lock:
                if generation.ok and self.store is not None:
                    state.stored.add(task_id)
                done, total, tokens = state.arrived.get(model, (0, len(items), 0))
                state.arrived[model] = (done + 1, total, tokens + generation.tokens_out)
                done, total, tokens = state.arrived[model]
            self._emit(
                ProgressEvent(
                    kind="generated",
                    phase=state.phase_of.get(task_id),
                    model=model,
                    done=min(done, total),
                    total=total,
                    tokens=tokens,
                )
            )

        with self._timed(state, "generate_seconds"):
            if state.relay is None:
                out = engine.generate(requests, arrived)
            else:
                out = engine.generate(requests, arrived, on_delta=state.relay.attempt([tid for tid, _ in items]))
        with state.lock:
            state.metrics.generate_calls += 1
        if len(out) != len(requests):
            raise EngineError(f"engine {engine.spec.name!r} answered {len(out)} of {len(requests)} requests")
        return {tid: generation for (tid, _), generation in zip(items, out, strict=True)}

    def _isolate(
        self, engine: Engine, items: list[tuple[str, Request]], state: RunState, reason: str
    ) -> dict[str, Generation]:
        """Halve a failing batch until the requests that fail on their own are found."""
        if len(items) == 1 or not engine.loaded:
            return {tid: Generation(request_id=r.id, model=engine.spec.name, error=reason) for tid, r in items}
        out: dict[str, Generation] = {}
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            try:
                out.update(self._call(engine, half, state))
            except CoeError as exc:
                out.update(self._isolate(engine, half, state, str(exc)))
        return out

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)
