"""Engines at work for the executor (``batching.executor``): loading a phase's models side by
side (or taking them warm), giving the cores to the local engines of each wave, releasing them,
and running one model's batch with a reload and retry when its engine dies and isolation of the
requests that still fail."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import cast

from batching.engines.base import Binder, Engine, EngineFactory, can_bind
from batching.engines.kinds import engine_kind
from batching.engines.replay import index_recordings
from batching.plan import Phase
from batching.results import ProgressEvent
from batching.run_state import RunState, StoreFailed
from batching.runstore import RunStore, request_key
from batching.spec import ExpertSpec
from batching.warm import WarmEngines, split_cores
from common import tracing
from common.errors import CoeError, EngineError
from common.requests import Generation, Request

log = logging.getLogger("batching.executor")  # a part of the executor: its log

_loading = threading.local()


def loading_phase() -> Phase | None:
    """The phase the current thread is loading an engine for (None outside a load)."""
    return getattr(_loading, "phase", None)


class EngineCalls:
    """The executor's engine side (a part of ``Executor``)."""

    engine_factory: EngineFactory
    store: RunStore | None
    warm: WarmEngines | None
    cores: tuple[int, ...] | None
    _emit: Callable[[ProgressEvent], None]
    _to_cache: Callable[[ExpertSpec, list[tuple[str, Request]], Mapping[str, Generation]], None]

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

    def _bind_wave(self, running: list[str], engines: Mapping[str, Engine], specs: Mapping[str, ExpertSpec]) -> None:
        """Before a wave: the local engines that generate in it share the cores, a lone one takes
        them all; engines that sit the wave out keep their cores but use none. An engine that
        cannot be moved generates where it is; one that died moving is found by its batch."""
        if self.cores is None:
            return
        local = [m for m in running if m in engines and engine_kind(specs[m]).local]
        # a lone engine gets every core: SmolLM2 alone, one request of 96 tokens, quiet machine,
        # made 21-23 tokens/s on both cores against 19-20 on one (moved back and forth, no reload)
        shares = self._split_cores(local) or {m: self.cores for m in local}
        for model, cpus in shares.items():
            engine = engines[model]
            if not can_bind(engine) or getattr(engine, "cpus", None) == cpus:
                continue
            try:
                cast(Binder, engine).bind(cpus)
            except CoeError as exc:
                log.warning("%s: could not move it to cores %s (%s)", model, list(cpus), exc)

    def _batch_done(self, phase: Phase, model: str, to_run: list[str], state: RunState) -> None:
        """Say how far ``model``'s tasks of the phase are, now that a batch of it ended."""
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

    def _load_models(
        self,
        models: list[str],
        phase: Phase,
        totals: Mapping[str, int],
        cpus: Mapping[str, tuple[int, ...]],
        engines: dict[str, Engine],
        broken: dict[str, str],
        pool: ThreadPoolExecutor,
        state: RunState,
        specs: Mapping[str, ExpertSpec],
    ) -> None:
        """Load ``models`` side by side into ``engines``; one that cannot load goes to ``broken``."""
        self._prepare_loads(models, phase, specs)
        for model in models:
            self._emit(
                ProgressEvent(
                    kind="model_loading", phase=phase.index, device=phase.device, model=model, total=totals[model]
                )
            )
        loads = [pool.submit(tracing.carried(self._load_for, phase, m, specs[m], state, cpus.get(m))) for m in models]
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

    def _load_for(
        self, phase: Phase, model: str, spec: ExpertSpec, state: RunState, cpus: tuple[int, ...] | None
    ) -> tuple[Engine | None, str | None, float]:
        """``_load`` in a loading thread that knows the phase it loads for (``loading_phase``: a
        replica's engine is made for its own device's phase)."""
        _loading.phase = phase
        try:
            return self._load(model, spec, state, cpus)
        finally:
            _loading.phase = None

    def _prepare_loads(self, models: list[str], phase: Phase, specs: Mapping[str, ExpertSpec]) -> None:
        """Before ``models`` of ``phase`` load: recorded models of one file are indexed in one pass
        over it (each replay engine would otherwise read the whole file for its own model)."""
        index_recordings([specs[m] for m in models])

    def _load(
        self, model: str, spec: ExpertSpec, state: RunState, cpus: tuple[int, ...] | None = None
    ) -> tuple[Engine | None, str | None, float]:
        """Load the model's engine (or take it warm); a failed load is tried once more. Returns the
        engine, the error if it could not be loaded, and the seconds it took."""
        started = time.perf_counter()
        with tracing.span("coe.load", {"coe.model": model}) as span:
            engine, error = self._load_once_or_twice(model, spec, state, cpus)
            tracing.note(span, {"coe.error": error})
        return engine, error, time.perf_counter() - started

    def _load_once_or_twice(
        self, model: str, spec: ExpertSpec, state: RunState, cpus: tuple[int, ...] | None
    ) -> tuple[Engine | None, str | None]:
        if self.warm is not None:
            claim = self.warm.claim(spec, cpus)
            if claim.how in ("woken", "wake_failed"):
                end = time.perf_counter()
                with state.lock:
                    state.intervals.append((end - claim.seconds, end))
                    state.metrics.wake_seconds += claim.seconds
                    state.metrics.wakes += int(claim.how == "woken")
                    state.metrics.failed_wakes += int(claim.how == "wake_failed")
            if claim.engine is not None:
                tracing.note(tracing.current_span(), {"coe.load": "woken" if claim.how == "woken" else "warm"})
                how = "woken from sleep" if claim.how == "woken" else "still loaded from the session's last run"
                log.info("%s: %s", model, how)
                return claim.engine, None
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
            tracing.note(tracing.current_span(), {"coe.load": "loaded", "coe.attempts": attempt})
            return engine, None
        return engine, error

    def _release(self, engine: Engine, state: RunState) -> None:
        """Hand the engine to the warm session, or unload it. A session keeps one engine per
        model: a replica's engine, when another replica's is already kept, is unloaded."""
        if self.warm is not None:
            with state.lock:  # device threads release side by side: one check-and-keep at a time
                kept = engine.spec.name not in self.warm.names and self.warm.give_back(engine)
            if kept:
                return
        with self._timed(state, "unload_seconds"):
            engine.unload()

    def _batch(
        self, model: str, engine: Engine, items: list[tuple[str, Request]], state: RunState, reloaded: set[str]
    ) -> str:
        """Run one model's whole ready batch and store what finished; returns the model. Its span,
        ``coe.generate``, says whose (``coe.role``: an aggregator's requests are composed from
        other answers), how many requests, how many failed, and the tokens read and written."""
        role = "aggregator" if any(state.tasks[tid].after for tid, _ in items) else "expert"
        with tracing.span("coe.generate", {"coe.model": model, "coe.role": role, "coe.requests": len(items)}) as span:
            out = self._generated(model, engine, items, state, reloaded)
            if span is not None:
                ok = [g for g in out.values() if g.ok]
                tracing.note(
                    span,
                    {
                        "coe.failed": len(out) - len(ok),
                        "gen_ai.usage.input_tokens": sum(g.tokens_in for g in ok),
                        "gen_ai.usage.output_tokens": sum(g.tokens_out for g in ok),
                    },
                )
        return model

    def _generated(
        self, model: str, engine: Engine, items: list[tuple[str, Request]], state: RunState, reloaded: set[str]
    ) -> dict[str, Generation]:
        """``_batch``'s work: every request's generation (or failure), stored and recorded."""
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
                        state.metrics.retried += len(items)
                    out = self._call(engine, items, state)
                except CoeError as again:
                    failure = again
            if out is None:
                out = self._isolate(engine, items, state, failure)
        except CoeError as exc:
            out = self._isolate(engine, items, state, exc)
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
        return out

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
            phase = state.phase_of.get(task_id)
            with state.lock:
                if generation.ok and self.store is not None:
                    state.stored.add(task_id)
                done, total, tokens = state.arrived.get((phase, model), (0, len(items), 0))
                state.arrived[phase, model] = (done + 1, total, tokens + generation.tokens_out)
                done, total, tokens = state.arrived[phase, model]
            self._emit(
                ProgressEvent(
                    kind="generated",
                    phase=phase,
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
        self, engine: Engine, items: list[tuple[str, Request]], state: RunState, failure: CoeError
    ) -> dict[str, Generation]:
        """Halve a failing batch until the requests that fail on their own are found; each keeps
        its error's message and class."""
        if len(items) == 1 or not engine.loaded:
            kind = type(failure).__name__
            return {
                tid: Generation(request_id=r.id, model=engine.spec.name, error=str(failure), error_type=kind)
                for tid, r in items
            }
        out: dict[str, Generation] = {}
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            try:
                out.update(self._call(engine, half, state))
            except CoeError as exc:
                out.update(self._isolate(engine, half, state, exc))
        return out
