"""The service's state, made in the app's lifespan: the warm orchestrator, the dispatcher that
runs requests in batches, the keys, the rate limiter, the keys' budgets and use, the semantic
cache, the metrics, the benchmarks a job may name and the redactor that keeps the server's
paths and addresses out of what clients see.

Unless ``lazy``, the dispatcher's first work is the warm-up (``Orchestrator.warm_up``): the
encoder, every recording the pool's experts answer from, every engine that stays warm and the
semantic cache's encoder are loaded before the first batch, and ``/readyz`` says ready only
once that is done."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from batching import ExpertSpec, MadeEngines, ProgressEvent
from batching.models import model_dir
from batching.spec import ReplaySource, VLLMSource
from common import tracing
from common.errors import CoeError, NotFound, RateLimited, Unavailable
from common.query import Query
from common.vocabulary import Aggregation
from eval import registered_benchmarks
from orchestrator.jobs.open import open_job_store
from orchestrator.jobs.queue import JobStore
from orchestrator.jobs.worker import JobWorker
from orchestrator.pipeline.inputs import check_k, check_policy
from orchestrator.pipeline.trace import Answer
from orchestrator.pools.settings import PROJECT_ROOT, ServiceSettings
from orchestrator.sdk import Orchestrator
from orchestrator.service.dispatch import Asking, BatchHooks, Dispatcher, Ticket
from orchestrator.service.engines import metered
from orchestrator.service.live import Live
from orchestrator.service.memory import FreedMemory
from orchestrator.service.metrics import Metrics
from orchestrator.service.redact import Redactor, path_names, source_names, url_names
from orchestrator.service.security import ApiKeys, RateLimiter
from orchestrator.service.semantic import ServiceCache
from orchestrator.service.tenants import Tenants
from orchestrator.stores.target import store_kind, store_location
from orchestrator.stores.usage import open_usage_store
from router import POLICIES

log = logging.getLogger(__name__)


class Service:
    """Everything the routes use. ``start()`` loads the router; ``stop()`` lets the batch in
    flight finish and unloads every engine."""

    def __init__(
        self,
        settings: ServiceSettings,
        orchestrator: Orchestrator | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: the time budgets' days and months are read from (tests move it)."""
        self.settings = settings
        self.metrics = Metrics()
        self.coe = orchestrator or Orchestrator(settings.core)
        self._serving = [True]
        self.coe.wrap_engines(lambda factory: metered(factory, self.metrics, self._serving))
        made = MadeEngines(self.coe.engine_factory)  # the sleeping-models gauge counts them at each scrape
        self.coe.wrap_engines(lambda _metered: made.factory)
        self.made = made
        self.metrics.sleeping.set_function(made.sleeping)
        self.keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file is not None else None
        self.freed = FreedMemory()  # freed memory goes back to the system after each batch
        per_minute = settings.rate_limit_per_minute
        rated = per_minute is not None or (self.keys is not None and self.keys.rated)
        self.limiter = _CountedLimiter(per_minute, self.metrics) if rated else None
        self.dispatcher = Dispatcher(
            self._run_batch,
            grouping=settings.grouping,
            max_batch=settings.max_batch,
            gather_s=settings.gather_ms / 1000,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            on_queue=self.metrics.queue.set,
            on_wait=self.metrics.stage.labels("queue").observe,
            on_refuse=lambda reason: self.metrics.refused.labels(reason).inc(),
            prepare=None if settings.lazy else self._warm_up,
            after_batch=self.freed.release,  # at most once a second while busy
            on_idle=lambda: self.freed.release(now=True),  # and once the last responses are sent
        )
        self.benchmarks = registered_benchmarks(settings.benchmarks)
        """The benchmarks a job may name: the built-ins and the spec files registered at start."""
        jobs = settings.jobs
        self.store_location = store_location(settings.core.store, settings.core.runs_dir)
        self.jobs: JobStore = open_job_store(
            self.store_location, reclaim_s=jobs.reclaim_s, max_attempts=jobs.max_attempts
        )
        semantic = settings.semantic_cache
        scope = f"{self.pool}@{self.coe.pool.pool.version}"  # a new version of the pool answers anew
        self.semantic = (
            ServiceCache(semantic, self.store_location, scope, self.metrics, self.coe.settings.encoders_dir)
            if semantic.enabled
            else None
        )
        """The semantic cache; None unless enabled."""
        self.tenants = (
            Tenants(self.keys, open_usage_store(self.store_location), self.metrics, clock=clock)
            if self.keys is not None
            else None
        )
        """The keys' budgets and use, kept in the store; None without keys."""
        self.job_workers = [
            JobWorker(self.coe, self.jobs, jobs, benchmarks=self.benchmarks, label=f"w{i}", meter=self.tenants)
            for i in range(jobs.workers)
        ]
        self.redact = Redactor(self._places())
        """Takes the server's paths, hosts and ports out of text bound for a client."""
        self.live = Live(lambda text: self.redact(text))
        """The recent requests and answers, and the batch's progress, for the live page."""

    def _places(self) -> dict[str, str]:
        """The server's places a message may name -> what a client is shown instead."""
        core = self.coe.settings
        folders = [
            (core.data_dir, "data folder"),
            (core.runs_dir, "runs folder"),
            (core.cache_dir, "cache folder"),
            (core.pool, f"pool {self.pool}"),
            (PROJECT_ROOT, "the service's folder"),
            (Path.home(), "home"),
        ]
        for file in self.settings.benchmarks:
            folders += [(file, "a benchmark spec"), (file.parent, "a benchmark's folder")]
        places = path_names(folders)
        if store_kind(self.store_location) == "redis":
            places.update(url_names(self.store_location, "the store"))
        else:
            places.update(path_names([(self.store_location, "the store")]))
        sources: dict[str, list[str]] = {}  # each place an expert's model lives -> its experts
        for name, spec in self.coe.pool.specs.items():
            for text in source_names(name, spec.source):
                sources.setdefault(text, []).append(name)
        for name, spec in self.coe.pool.specs.items():
            for text, shown in source_names(name, spec.source).items():
                if len(sources[text]) > 1:  # e.g. experts behind one endpoint, or in one recordings file
                    shown = source_names("several experts", spec.source)[text]
                places[text] = shown
        return places

    @property
    def pool(self) -> str:
        return self.coe.pool.name

    def start(self) -> None:
        self.coe.open()
        self.coe.router()  # the default router's artefacts load now: a broken pool stops the start
        cache = self.coe.cache  # opened now: a file that is not a store stops the start, not a request
        if cache is not None:
            self.metrics.cache.source = cache.stats.snapshot
        self.dispatcher.start()
        for worker in self.job_workers:
            worker.start()
        log.info("serving pool %s (%d experts)", self.pool, len(self.coe.pool.expert_names))

    def stop(self) -> None:
        for worker in self.job_workers:
            worker.stopping.set()  # each ends its step and hands its job back
        for worker in self.job_workers:
            worker.stop(timeout=600)
        self.dispatcher.stop(timeout=600)
        self._serving[0] = False
        self.coe.close()
        self.jobs.close()
        if self.tenants is not None:
            self.tenants.store.close()
        if self.semantic is not None:
            self.semantic.close()

    # -- asking ---------------------------------------------------------------------------------

    def asking(
        self, policy: str | None, k: int | None, aggregation: Aggregation = "synthesis", max_tokens: int | None = None
    ) -> Asking:
        """How a request is answered, checked now so that a bad request fails alone."""
        name = check_policy(policy, self.coe.settings.policy)
        if name not in POLICIES:
            self.coe.router(name, k)  # raises NotFound naming the closest policy
        chosen = check_k(k, self.coe.settings.k, len(self.coe.pool.expert_names))
        return Asking(name, chosen, aggregation, max_tokens)

    def submit(self, query: Query, asking: Asking, on_delta=None, *, on_step=None, caller: str | None = None) -> Ticket:
        return self.submit_all([query], asking, on_delta, on_step=on_step, caller=caller)[0]

    def submit_all(
        self, queries: Sequence[Query], asking: Asking, on_delta=None, *, on_step=None, caller: str | None = None
    ) -> list[Ticket]:
        """One ticket per query, all queued or all refused (``Overloaded``); the request's span
        (when something traces) learns how they are asked, and the live page keeps their answers
        as ``caller``'s (the asking key's id)."""
        traced = {"coe.pool": self.pool, "coe.policy": asking.policy, "coe.k": asking.k}
        tracing.note(tracing.current_span(), {**traced, "coe.aggregation": asking.aggregation})
        tickets = self.dispatcher.submit_all(queries, asking, on_delta, on_step)
        self.live.watch(tickets, caller)
        return tickets

    def _warm_up(self) -> None:
        started = time.perf_counter()
        with self.coe.busy:
            loaded = self.coe.warm_up()
        if self.semantic is not None:
            self.semantic.warm()
        self.freed.release(now=True)  # reading the recordings freed what other models recorded
        log.info("warm-up done in %.1f s: %s", time.perf_counter() - started, ", ".join(loaded) or "no engine")

    def model_names(self) -> list[str]:
        """The virtual models of ``/v1/models``: the pool (default policy) and POOL/POLICY."""
        return [self.pool, *(f"{self.pool}/{p}" for p in POLICIES)]

    def policy_of(self, model: str) -> str | None:
        """The policy a virtual model name stands for (None: the default); NotFound if unknown."""
        pool, _, policy = model.partition("/")
        if pool != self.pool or (policy and policy not in POLICIES) or model.endswith("/"):
            raise NotFound(f"model {model!r} does not exist; this service serves {', '.join(self.model_names())}")
        return policy or None

    def _run_batch(self, asking: Asking, queries: Sequence[Query], hooks: BatchHooks) -> list[Answer]:
        owed: dict[str, int] = {}

        def progress(event: ProgressEvent) -> None:
            hooks.on_step(event)
            if event.model is None:
                return
            if event.kind == "model_loading":
                owed[event.model] = event.total
            elif event.kind == "generated":
                owed[event.model] = max(0, event.total - event.done)
            self.metrics.expert_queue.labels(event.model).set(owed.get(event.model, 0))

        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(queries))
        with self.coe.busy:
            pipeline = self.coe.pipeline(
                asking.policy,
                asking.k,
                aggregation=asking.aggregation,
                max_tokens=asking.max_tokens,
                progress=progress,
                on_delta=hooks.on_delta,
                skip=hooks.skip,
            )
            try:
                answers = pipeline.run(queries)
            finally:
                for model in owed:
                    self.metrics.expert_queue.labels(model).set(0)
        self._observe(answers)
        shown = [self.redact.answer(answer) for answer in answers]
        return self.semantic.after(asking, queries, shown) if self.semantic is not None else shown

    def _observe(self, answers: Sequence[Answer]) -> None:
        m = self.metrics
        for answer in answers:
            timings = answer.trace.timings
            for stage in ("route", "experts", "aggregate"):
                m.stage.labels(stage).observe(getattr(timings, stage))
            for expert in answer.trace.experts:
                m.tokens.labels("expert", "in").inc(expert.tokens_in)
                m.tokens.labels("expert", "out").inc(expert.tokens_out)
            aggregation = answer.trace.aggregation
            if aggregation is not None:
                m.tokens.labels("aggregator", "in").inc(aggregation.tokens_in)
                m.tokens.labels("aggregator", "out").inc(aggregation.tokens_out)
                m.aggregations.labels(answer.trace.outcome).inc()
        if answers:
            m.stage.labels("load").observe(answers[0].trace.timings.load)

    # -- health -----------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when the dispatcher runs, every expert is loaded or loadable, the runs folder is
        writable and the generation store answers; the details say which part is not, in words a
        client may see (no server path, host or port)."""
        problems: dict[str, str] = {}
        if not self.dispatcher.alive:
            problems["dispatcher"] = "not running"
        elif not self.dispatcher.prepared.is_set():
            problems["warm-up"] = "loading the encoder, the recordings and the engines that stay warm"
        elif self.dispatcher.prepare_error is not None:
            problems["warm-up"] = f"failed: {self.dispatcher.prepare_error}"
        loaded = set(self.coe.loaded_models)
        experts: dict[str, str] = {}
        for name, spec in self.coe.pool.specs.items():
            # asked of loaded experts too: one warmed from recordings since deleted would not load again
            reason = _unloadable(spec, self.coe.settings.cache_dir)
            experts[name] = reason or ("loaded" if name in loaded else "loadable")
            if reason:
                problems[f"expert {name}"] = reason
        if not _writable(self.coe.settings.runs_dir):
            problems["store"] = "cannot write to the runs folder"
        cache = self.coe.cache
        if cache is not None:
            try:
                cache.ping()
            except CoeError as exc:
                problems["cache"] = str(exc)
        try:
            self.jobs.check()
        except Unavailable as exc:
            problems["jobs"] = str(exc)
        if self.tenants is not None:
            try:
                self.tenants.store.ping()
            except CoeError as exc:
                problems["usage"] = str(exc)
        working = sum(w.alive for w in self.job_workers)
        if working < len(self.job_workers):
            problems["job workers"] = f"{len(self.job_workers) - working} of {len(self.job_workers)} stopped"
        experts = {name: self.redact(state) for name, state in experts.items()}
        details: dict[str, object] = {"pool": self.pool, "experts": experts, "queue": self.dispatcher.depth}
        details["jobs"] = {"store": store_kind(self.store_location), "workers": working}
        if problems:
            details["problems"] = {part: self.redact.shown(why, f"readiness: {part}") for part, why in problems.items()}
        return not problems, details


class _CountedLimiter(RateLimiter):
    """The rate limit, each refusal counted in ``coe_refused_total{reason="rate_limit"}``."""

    def __init__(self, per_minute: int | None, metrics: Metrics) -> None:
        super().__init__(per_minute)
        self._metrics = metrics

    def take(self, key_id: str, per_minute: int | None = None) -> None:
        try:
            super().take(key_id, per_minute)
        except RateLimited:
            self._metrics.refused.labels("rate_limit").inc()
            raise


def _unloadable(spec: ExpertSpec, cache_dir: Path) -> str | None:
    """Why an expert could not be loaded now, or None when it can."""
    source = spec.source
    if isinstance(source, ReplaySource):
        return None if Path(source.path).is_file() else f"recordings missing: {source.path}"
    if isinstance(source, VLLMSource):
        ref = source.model
        if ref.startswith("packaged:"):
            name = ref.removeprefix("packaged:")
            if model_dir(name, cache_dir).is_dir():
                return None
            return None if importlib.util.find_spec("transformers") else f"{name} is not prepared"
        if ref.startswith(("/", ".", "~")):
            return None if Path(ref).expanduser().exists() else f"model folder missing: {ref}"
    return None  # hub ids and HTTP endpoints are checked when they are first used


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


__all__ = ["Service"]
