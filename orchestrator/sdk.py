"""The public SDK: ``Orchestrator(settings).answer("...")``.

    from orchestrator import Orchestrator, load_settings
    coe = Orchestrator(load_settings(pool="pools/default"))
    answer = coe.answer("Which planet is largest?")
    print(answer.text); print(answer.summary())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aggregators import SynthesisJob
from batching import Engine, ExpertSpec, make_engine
from common.requests import Generation, Request
from common.tasks import Task
from batching.executor import Executor, ProgressCallback
from batching.plan import Plan, make_plan
from batching.runstore import SQLiteRunStore
from common.errors import BadInput
from eval.benchmarks import Benchmark, Question
from orchestrator.inputs import check_options, check_question, free_question
from orchestrator.pipeline import AGGREGATE, Pipeline, require_answer
from orchestrator.pool import Pool, load_pool
from orchestrator.resources import footprints_mb, gpu_memory_mb, memory_budget_mb
from orchestrator.routing import pool_aggregator_choice, pool_router
from orchestrator.settings import Settings, load_settings
from orchestrator.trace import Answer
from router import RouteDecision, Router

log = logging.getLogger(__name__)


class Orchestrator:
    """Routes questions to a pool's experts, runs them in batches and aggregates their answers.

    ``engine_factory`` replaces how engines are made (tests pass fakes); by default each
    expert gets the engine its pool entry names (vLLM, HTTP or replay).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pool: Pool | None = None,
        engine_factory: Callable[[ExpertSpec], Engine] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.pool = pool or load_pool(self.settings.pool, self.settings.data_dir)
        cache_dir = self.settings.cache_dir
        self.engine_factory = engine_factory or (lambda spec: make_engine(spec, cache_dir=cache_dir))
        self.progress = progress
        self._routers: dict[tuple[str, int], Router] = {}
        self._memory: tuple[float, dict[str, float]] | None = None

    def memory(self) -> tuple[float, dict[str, float]]:
        """The planner's memory budget (MB) and the footprints that override the declared ones."""
        if self._memory is None:
            gpu = gpu_memory_mb()
            budget = self.settings.memory_budget_mb or memory_budget_mb(gpu)
            self._memory = (budget, footprints_mb(self.pool.specs, gpu))
        return self._memory

    def router(self, policy: str | None = None, k: int | None = None) -> Router:
        key = (policy or self.settings.policy, k or self.settings.k)
        if key not in self._routers:
            self._routers[key] = pool_router(self.pool, *key)
        return self._routers[key]

    def route(self, question: str, *, policy: str | None = None, k: int | None = None) -> RouteDecision:
        text = check_question(question, self.settings.max_question_chars)
        return self.router(policy, k).route([text], [free_question(text).id])[0]

    def answer(
        self,
        question: str,
        *,
        options: Sequence[str] | None = None,
        policy: str | None = None,
        k: int | None = None,
    ) -> Answer:
        """Answer one question (optionally multiple-choice). Raises if no expert answered."""
        text = check_question(question, self.settings.max_question_chars)
        item = free_question(text, check_options(options))
        return require_answer(self.answer_batch([item], policy=policy, k=k)[0])

    def answer_batch(
        self,
        questions: Sequence[Question],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
        run_id: str | None = None,
    ) -> list[Answer]:
        """Answer a batch, each model loaded once. With ``run_id`` every finished generation is
        checkpointed under ``settings.runs_dir``, and the same call resumes a killed run."""
        for question in questions:
            if not isinstance(question, Question):
                raise BadInput(f"answer_batch takes eval.Question items, got {type(question).__name__}")
            check_question(question.text, self.settings.max_question_chars, field=f"question {question.id}")
        store = None
        if run_id is not None:
            self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
            store = SQLiteRunStore(self.settings.runs_dir / "runs.sqlite")
        try:
            return self._pipeline(policy, k, store).run(questions, benchmark, run_id=run_id)
        finally:
            if store is not None:
                store.close()

    def plan(
        self, questions: Sequence[Question], *, policy: str | None = None, k: int | None = None
    ) -> Plan:
        """The batch plan ``answer_batch`` would run (routing included), without running it."""
        pipeline = self._pipeline(policy, k, None)
        decisions = pipeline.router.route([q.text for q in questions], [q.id for q in questions])
        tasks, _ = pipeline.tasks(questions, decisions)
        return make_plan(tasks, self.pool.specs, budget_mb=pipeline.budget_mb, footprints=pipeline.footprints,
                         devices=self.settings.devices, aggregators={t.model for t in tasks if t.after})

    def tasks(
        self,
        questions: Sequence[Question],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
    ) -> tuple[list[Task], dict[str, SynthesisJob]]:
        """The expert and aggregation tasks ``answer_batch`` would run (routing included), with
        each aggregation task's synthesis job, without running them."""
        pipeline = self._pipeline(policy, k, None)
        decisions = pipeline.router.route([q.text for q in questions], [q.id for q in questions])
        return pipeline.tasks(questions, decisions, benchmark=benchmark)

    def run_tasks(self, tasks: Sequence[Task], *, run_id: str | None = None) -> dict[str, Generation]:
        """Run arbitrary tasks (profiling, annotation) through the planner: each model loads once."""
        tasks = list(tasks)
        budget, footprints = self.memory()
        the_plan = make_plan(tasks, self.pool.specs, budget_mb=budget, footprints=footprints,
                             devices=self.settings.devices)
        with Executor(self.engine_factory, None, self.progress) as executor:
            result = executor.run(the_plan, tasks, self.pool.specs, _no_compose, run_id=run_id or "tasks")
        return result.generations

    def _pipeline(self, policy: str | None, k: int | None, store) -> Pipeline:
        return Pipeline(
            pool=self.pool,
            router=self.router(policy, k),
            engine_factory=self.engine_factory,
            budget_mb=self.memory()[0],
            footprints=self.memory()[1],
            devices=self.settings.devices,
            store=store,
            progress=self.progress,
            choice=pool_aggregator_choice(self.pool),
        )


def _no_compose(task: Task, inputs) -> Request:
    raise BadInput(f"task {task.id!r} waits on other tasks; run_tasks only runs independent tasks")


__all__ = ["AGGREGATE", "Orchestrator"]
