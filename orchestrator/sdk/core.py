"""The public SDK: ``Orchestrator.from_pool("pools/default").answer("...")``.

from orchestrator import Orchestrator, Query
with Orchestrator.from_pool("pools/default") as coe:   # engines stay loaded inside ``with``
    answer = coe.answer("Which planet is largest?")
    print(answer.text); print(answer.summary())
    answers = coe.answer_batch(["Is a tomato a fruit?", Query(text="2+2?", options=("3", "4"))])
    answer = coe.chat([{"role": "user", "content": "Which planet is largest?"},
                       {"role": "assistant", "content": "Jupiter."},
                       {"role": "user", "content": "And its largest moon?"}])

Every method has an async twin (``aanswer``, ``aanswer_batch``, ``achat``) that runs it in a
worker thread; calls on one ``Orchestrator`` run one at a time, since they share its engines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from batching import EngineFactory, GenerationCache, WarmEngines, make_engine, model_footprint
from batching.engines.replay import index_recordings
from batching.executor import ProgressCallback
from batching.plan import make_plan
from batching.runstore import RunStore, SQLiteRunStore
from common.errors import BadInput
from common.query import Query
from common.requests import Generation
from common.tasks import Composed, Task
from common.vocabulary import Aggregation
from common.vocabulary import ScorerKind as Scorer
from eval.benchmarks import Benchmark
from orchestrator.executors import ExecutorChoice
from orchestrator.pipeline.conversation import Sessions
from orchestrator.pipeline.core import Pipeline, require_answer
from orchestrator.pipeline.inputs import as_query, check_answering, check_k, check_policy, check_scorer
from orchestrator.pipeline.items import item_index
from orchestrator.pipeline.trace import Answer
from orchestrator.pipeline.turns import check_session, read_messages
from orchestrator.pools.pool import Pool, load_pool
from orchestrator.pools.resources import Machine
from orchestrator.pools.routing import Routers, pool_aggregator_choice, pool_synthesis
from orchestrator.pools.settings import Settings, load_settings
from orchestrator.sdk.planning import Planning
from orchestrator.sdk.twins import AsyncTwins
from orchestrator.stores import (
    GenerationStore,
    SessionSlot,
    SessionStore,
    StoreSlot,
    open_generation_store,
    open_session_store,
)
from router import RouteDecision, Router, load_scorer

log = logging.getLogger(__name__)


class Orchestrator(AsyncTwins, Planning):
    """Routes questions to a pool's experts, runs them in batches and aggregates their answers.

    ``engine_factory`` replaces how engines are made (tests pass fakes); by default each
    expert gets the engine its pool entry names (vLLM, HTTP or replay). Used as a context
    manager (``with Orchestrator(...) as coe:``) it keeps engines loaded between calls while
    they fit the memory budget, and unloads them on exit; otherwise each call loads and
    unloads its models.

    Generations are cached by what was asked (``settings.store``; by default an SQLite file in
    ``runs_dir``): a question asked again with the same experts, prompt and sampling is answered
    without loading or running anything. ``settings.cache``: ``use`` (read and write),
    ``refresh`` (write only), ``off``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pool: Pool | None = None,
        engine_factory: EngineFactory | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.pool = pool or load_pool(self.settings.pool, self.settings.data_dir)
        cache_dir = self.settings.cache_dir
        self.engine_factory: EngineFactory = engine_factory or (
            lambda spec, cpus=None: make_engine(spec, cache_dir=cache_dir, cpus=cpus)
        )
        # our own engines on a CPU: co-resident vLLM models get disjoint cores
        self.machine = Machine(self.pool.specs, self.settings.memory_budget_mb, own_cores=engine_factory is None)
        self.progress = progress
        self._routers = Routers(
            self.pool,
            lambda tasks: self.run_tasks(tasks),
            embeddings_dir=self.settings.embeddings_dir,
            encoders_dir=self.settings.encoders_dir,
        )
        self._warm: WarmEngines | None = None
        self._busy = threading.RLock()  # one call at a time: calls share the engines
        self._store = StoreSlot(self._open_store)
        self._sessions = SessionSlot(
            lambda: open_session_store(self.settings.store_target, self.settings.session_ttl_s),
            self.settings.session_ttl_s,
        )
        # which benchmark item a free-text question is, for replay models: read on first use
        self._items = item_index(self.pool, self.settings.data_dir)

    @classmethod
    def from_pool(cls, pool: str | Path, **settings: object) -> Orchestrator:
        """An orchestrator for the pool folder ``pool``; ``settings`` override the others
        (``load_settings``: e.g. ``memory_budget_mb=4000``, ``policy="topk"``)."""
        return cls(load_settings(pool=pool, **settings))

    def __enter__(self) -> Orchestrator:
        """A warm session (``open``), closed on leaving the block."""
        return self.open()

    def open(self) -> Orchestrator:
        """Start a warm session: engines stay loaded between calls while they fit the memory
        budget, until ``close``."""
        if self._warm is None:
            budget, footprints = self.memory()
            sizes = {name: model_footprint(name, spec, footprints) for name, spec in self.pool.specs.items()}
            self._warm = WarmEngines(budget, sizes)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self) -> list[str]:
        """Load now what answering would load on first use: the default router and its encoder (which
        every router shares); the recordings of every recorded expert (one pass per file); and, in a
        warm session (``with``), the engines of the experts and then the aggregator, each that fits
        the memory budget beside those before it, bound to cores as one phase holding them would
        bind them. Returns the models whose engines are loaded."""
        load_scorer(self.router().scorer)
        names = dict.fromkeys([*self.pool.expert_names, self.pool.aggregator.name])
        specs = [self.pool.spec(name) for name in names]
        if self._warm is None:
            index_recordings(specs)
            return []
        with self._busy:
            return self._warm.preload(specs, self.engine_factory, self.machine.split_cores())

    def close(self) -> None:
        """Unload the engines a warm session kept, and close the stores that were opened."""
        if self._warm is not None:
            warm, self._warm = self._warm, None
            warm.close()
        self._store.close()
        self._sessions.close()

    def wrap_engines(self, wrap: Callable[[EngineFactory], EngineFactory]) -> None:
        """Make every engine from now on through ``wrap(factory)`` (the service meters and counts
        its engines so)."""
        self.engine_factory = wrap(self.engine_factory)

    def _open_store(self) -> GenerationStore:
        settings = self.settings
        store = open_generation_store(settings.store_target, settings.cache_ttl_s, settings.cache_max_entries)
        log.info("generation cache: %s (%s)", store.name, settings.cache)
        return store

    @property
    def generation_store(self) -> GenerationStore:
        """The generation cache's store (``settings.store``, else ``runs_dir/store.sqlite``), opened
        on first use and kept until ``close``. A Redis store connects when it is first asked."""
        return self._store.get()

    @property
    def session_store(self) -> SessionStore:
        """Where conversations' session state lives (the generation store's place), each entry
        expiring ``settings.session_ttl_s`` after its last turn; opened on first use."""
        return self._sessions.opened()

    @property
    def cache(self) -> GenerationStore | None:
        """The store runs use as their cache: None when ``settings.cache`` is ``off``."""
        return None if self.settings.cache == "off" else self.generation_store

    def _cache_on_use(self) -> GenerationCache | None:
        """The cache a run is given: the store, opened when the run first reads or writes it (input
        refused before that opens nothing)."""
        return None if self.settings.cache == "off" else self._store.on_use()

    def memory(self) -> tuple[float, dict[str, float]]:
        """The planner's memory budget (MB) and the footprints that override the declared ones."""
        return self.machine.memory()

    def router(self, policy: str | None = None, k: int | None = None, *, scorer: Scorer = "classifier") -> Router:
        """The pool's router for ``policy`` and ``k`` (the settings' when None), built once.

        ``scorer``: ``classifier`` (the pool's trained skill classifier) or ``keywords`` (the
        pool's aggregator annotates each question with keywords, mapped onto the profile's
        skills: Symbolic-MoE's way; it runs the annotator model)."""
        check_scorer(scorer)
        policy = check_policy(policy, self.settings.policy)
        return self._routers.get(policy, check_k(k, self.settings.k, len(self.pool.expert_names)), scorer)

    def route(
        self, question: str | Query, *, policy: str | None = None, k: int | None = None, scorer: Scorer = "classifier"
    ) -> RouteDecision:
        """The routing decision for one question: skills, chosen experts and their scores."""
        query = as_query(question, self.settings.max_question_chars)
        return self.router(policy, k, scorer=scorer).route([query.text], [query.id])[0]

    def answer(
        self,
        question: str | Query,
        *,
        options: Sequence[str] | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        """Answer one question (multiple-choice when ``options`` are given). Raises if no expert answered.

        ``aggregation``: the aggregator model writes the answer (``synthesis``) or the experts'
        majority is it (``majority``). ``max_tokens``: most tokens the aggregator may write."""
        query = as_query(question, self.settings.max_question_chars, options=options)
        pipeline = self.pipeline(
            policy, k, scorer=scorer, aggregation=aggregation, max_tokens=max_tokens, skip_consensus=skip_consensus
        )
        return require_answer(self._run([query], None, pipeline, None)[0])

    def chat(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        session: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        """Answer a conversation's last user message (``{"role", "content"}`` messages, as OpenAI's
        chat): each model reads it in its own template, cut to its context; it keeps its experts
        while its skills stay within the pool's ``sessions.shift`` (``session`` names it, else its
        earlier turns do). Other options as in ``answer``."""
        query = read_messages(
            messages,
            max_question_chars=self.settings.max_question_chars,
            max_conversation_chars=self.settings.max_conversation_chars,
            session=check_session(session),
        )
        pipeline = self.pipeline(
            policy, k, scorer=scorer, aggregation=aggregation, max_tokens=max_tokens, skip_consensus=skip_consensus
        )
        return require_answer(self._run([query], None, pipeline, None)[0])

    def answer_batch(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
        run_id: str | None = None,
        logprobs: bool = False,
    ) -> list[Answer]:
        """Answer a batch, each model loaded once. Items are strings or ``Query`` records (benchmark
        items with ``benchmark``). With ``run_id`` every finished generation is checkpointed under
        ``settings.runs_dir``, and the same call resumes a killed run. A question whose experts
        all failed comes back with ``error`` set. ``aggregation`` and ``max_tokens`` as in ``answer``.
        ``logprobs``: the experts are asked for their tokens' log-probabilities (each expert
        answer's ``logprob``, where the engine gives them; a cascade always asks)."""
        queries = self._queries(questions)
        pipeline = self.pipeline(
            policy, k, scorer=scorer, aggregation=aggregation, max_tokens=max_tokens, skip_consensus=skip_consensus
        )
        return self._run(queries, benchmark, replace(pipeline, logprobs=bool(logprobs)), run_id)

    def _queries(self, questions: object) -> list[Query]:
        """A batch checked once: a list of strings or ``Query`` records."""
        if isinstance(questions, str) or not isinstance(questions, Sequence):
            raise BadInput("a batch takes a list of questions")
        limit = self.settings.max_question_chars
        return [as_query(q, limit, field=f"questions[{i}]") for i, q in enumerate(questions)]

    def run_tasks(self, tasks: Sequence[Task], *, run_id: str | None = None) -> dict[str, Generation]:
        """Run independent tasks (profiling, annotation) through the planner: each model loads once."""
        tasks = list(tasks)
        budget, footprints = self.memory()
        the_plan = make_plan(
            tasks, self.pool.specs, budget_mb=budget, footprints=footprints, devices=self.settings.devices
        )
        executor = self.placement.executor(
            self.engine_factory,
            None,
            self.progress,
            self._warm,
            self.machine.split_cores(),
            cache=self._cache_on_use(),
            cache_reads=self.settings.cache == "use",
        )
        with self._busy:
            return executor.run(the_plan, tasks, self.pool.specs, _no_compose, run_id=run_id or "tasks").generations

    def _run(
        self, queries: list[Query], benchmark: Benchmark | None, pipeline: Pipeline, run_id: str | None
    ) -> list[Answer]:
        if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
            raise BadInput(f"run_id must be a non-empty string, got {run_id!r}")
        with self._busy:
            if run_id is None:
                return pipeline.run(queries, benchmark)
            store = SQLiteRunStore(self.settings.runs_dir / "generations.v3.sqlite")
            try:
                return replace(pipeline, store=store).run(queries, benchmark, run_id=run_id)
            finally:
                store.close()

    def pipeline(
        self,
        policy: str | None = None,
        k: int | None = None,
        *,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
        progress: ProgressCallback | None = None,
        on_delta: Callable[[str, str], None] | None = None,
        skip: Callable[[Task], str | None] | None = None,
        store: RunStore | None = None,
    ) -> Pipeline:
        """The pipeline ``answer_batch`` runs, for callers that schedule batches themselves (the
        service, evaluations): ``on_delta(task_id, text)`` receives generated text as it arrives
        where the engine streams, ``skip(task)`` names why a task should not run (a cancelled
        request), and ``store`` checkpoints every generation (a run to resume). ``skip_consensus``:
        False always calls the aggregator; None follows ``settings.skip_agreement``. Run it while
        holding ``busy``: calls share the engines."""
        check_answering(aggregation, max_tokens)
        pipeline = self._pipeline(self.router(policy, k, scorer=scorer), store)
        if skip_consensus is False:
            pipeline = replace(pipeline, synthesis=pipeline.synthesis.model_copy(update={"skip_agreement": None}))
        return replace(
            pipeline,
            aggregation=aggregation,
            max_tokens=max_tokens,
            progress=progress or self.progress,
            on_delta=on_delta,
            skip=skip,
            cache=self._cache_on_use(),
            cache_reads=self.settings.cache == "use",
        )

    @property
    def loaded_models(self) -> list[str]:
        """Experts whose engines a warm session holds loaded now (empty outside ``with``)."""
        return self._warm.names if self._warm is not None else []

    @property
    def busy(self) -> threading.RLock:
        """Held while a call runs the engines; a scheduler running ``pipeline()`` holds it too."""
        return self._busy

    def _pipeline(self, router: Router, store: RunStore | None) -> Pipeline:
        return Pipeline(
            pool=self.pool,
            router=router,
            engine_factory=self.engine_factory,
            cores=self.machine.split_cores(),
            budget_mb=self.memory()[0],
            footprints=self.memory()[1],
            devices=self.settings.devices,
            store=store,
            progress=self.progress,
            choice=pool_aggregator_choice(self.pool),
            synthesis=pool_synthesis(self.pool, self.settings.consensus),
            warm=self._warm,
            items=self._items,
            placement=self.placement,
            sessions=Sessions(self._sessions, self.pool.name, self.pool.pool.sessions.shift, self.pool.expert_names),
        )

    @property
    def placement(self) -> ExecutorChoice:
        """Where runs execute (``settings.executor``, ``settings.ray_address``)."""
        return ExecutorChoice(self.settings.executor, self.settings.ray_address)


def _no_compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    raise BadInput(f"task {task.id!r} waits on other tasks; run_tasks only runs independent tasks")


__all__ = ["Orchestrator"]
