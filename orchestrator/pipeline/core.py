"""The pipeline: route -> plan -> generate -> aggregate, for a batch of queries. Every door runs
it: the SDK, ``coe ask``, ``coe eval``, ``coe profile``, ``coe calibrate``, the service and the
job workers each call ``Pipeline.run`` or ``Pipeline.ask`` + ``Pipeline.answer`` and add only
what is theirs.

One straight path. Each query is decided once (``Asked``: its route, prompt, judge, aggregator
and the experts' competence); the task graph is built from those records
(``orchestrator.pipeline.graph``); the batch planner and executor run it (each model loaded once, the
aggregator's work last, composing its prompt from the expert answers that arrived); and each
``Answer`` is a pure function of the ``Asked`` record and the run's result
(``orchestrator.pipeline.answering``), which carries what went into every aggregation.

An expert that fails is dropped from that answer with its reason; if the aggregator fails,
the experts' majority vote (ties broken by competence) stands in and the trace says why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aggregators import AggregatorChoice, SynthesisOptions, compose
from batching import EngineFactory, WarmEngines
from batching.cache import GenerationCache
from batching.executor import Executor, ProgressCallback, ProgressEvent, RunResult
from batching.plan import Plan, make_plan
from batching.results import RunMetrics
from batching.runstore import RunStore
from common import tracing
from common.errors import BadInput
from common.pause_gc import paused_gc
from common.query import Query
from common.requests import Generation
from common.tasks import Task
from common.vocabulary import EvalAggregation
from eval.benchmarks import Benchmark
from orchestrator.executors import ExecutorChoice
from orchestrator.pipeline.answering import build_answers, climbed, heard
from orchestrator.pipeline.asked import Asked, Prompting, prompting
from orchestrator.pipeline.conversation import Sessions, aggregator_context, contexts, shown
from orchestrator.pipeline.graph import limited, synthesis_job, task_graph, voters_only
from orchestrator.pipeline.items import ItemIndex, item_of
from orchestrator.pipeline.rounds import Climb, Rounds, merge
from orchestrator.pipeline.trace import Answer
from orchestrator.pools.pool import Pool
from router import Heard, RouteDecision, Router, SkillRows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answered:
    """A run's answers, one per record in order, and what the run took."""

    answers: list[Answer]
    metrics: RunMetrics
    tasks: int = 0
    """Tasks the run had (resumed, cached and failed ones included)."""


@dataclass
class Pipeline:
    pool: Pool
    router: Router
    engine_factory: EngineFactory
    budget_mb: float
    footprints: dict[str, float] = field(default_factory=dict)
    devices: int = 1
    store: RunStore | None = None
    progress: ProgressCallback | None = None
    synthesis: SynthesisOptions = SynthesisOptions(order="competence")
    choice: AggregatorChoice | None = None
    warm: WarmEngines | None = None
    cores: tuple[int, ...] | None = None
    aggregation: EvalAggregation = "synthesis"
    """The aggregator model writes each answer, or the experts' vote is it."""
    max_tokens: int | None = None
    """Most tokens the aggregator may write (its own setting when None)."""
    on_delta: Callable[[str, str], None] | None = None
    """Hears each task's text as it is generated (task id, new text), where the engine streams."""
    skip: Callable[[Task], str | None] | None = None
    """Why a task should not run (e.g. its request was cancelled), or None."""
    cache: GenerationCache | None = None
    """Generations of earlier runs by what was asked: hits run nothing, new ones are written."""
    cache_reads: bool = True
    """False: never answer from the cache, still write to it (a refresh)."""
    logprobs: bool = False
    """Ask the experts for their tokens' log-probabilities (a cascade's rounds always do)."""
    temperature: float | None = None
    """The experts' sampling temperature (None: each expert's own)."""
    whole_ladders: bool = False
    """Ask a cascade's every rung at once and climb it afterwards (an evaluation, whose methods
    share generations), instead of in rounds."""
    items: ItemIndex | None = None
    """Finds the benchmark item a free-text query is, for a pool with replay models."""
    placement: ExecutorChoice = ExecutorChoice()
    """Where the planned groups run: this process, or a Ray cluster (``orchestrator.executors``)."""
    sessions: Sessions | None = None
    """Session affinity of chat turns (``orchestrator.pipeline.conversation``); None: none kept."""

    def aggregator_for(self, decision: RouteDecision) -> str:
        """The stored selection's best aggregator for the query's top skill, else the pool's."""
        if self.choice is None:
            return self.pool.aggregator.name
        name = self.choice.for_skill(decision.top_skill)
        return name if name in self.pool.specs else self.pool.aggregator.name

    @paused_gc()
    def ask(
        self,
        queries: Sequence[Query],
        benchmark: Benchmark | None = None,
        *,
        weights: Sequence[Mapping[str, float]] | SkillRows | None = None,
        promptings: Sequence[Prompting] | None = None,
        sample: int = 0,
        method: str | None = None,
    ) -> list[Asked]:
        """Route the batch and decide, once per query, everything its answer depends on.
        ``weights``: the queries' skill weights when the caller already has them (several
        routers over one scorer: ``SkillRows`` normalises them once for all), else the router's
        scorer reads them. ``promptings``: each query's ``prompting(query, benchmark)``, when
        the caller asks the same queries of several routers."""
        ids = [q.id for q in queries]
        if not queries:
            raise BadInput("no questions to answer")
        if len(set(ids)) != len(ids):
            raise BadInput(f"question ids must be unique in a batch; repeated: {_first_repeat(ids)!r}")
        with tracing.span("coe.route", {**self._traced(), "coe.questions": len(queries)}) as span:
            asked = self._ask(queries, benchmark, weights, promptings, sample, method)
            chosen = dict.fromkeys(e for one in asked for e in one.decision.expert_names)
            tracing.note(span, {"coe.experts": list(chosen)})
        return asked

    def _ask(
        self,
        queries: Sequence[Query],
        benchmark: Benchmark | None,
        weights: Sequence[Mapping[str, float]] | SkillRows | None,
        promptings: Sequence[Prompting] | None,
        sample: int,
        method: str | None,
    ) -> list[Asked]:
        ids = [q.id for q in queries]
        earlier = contexts(queries)
        if weights is None and any(earlier):  # chat turns: each read in the context of its earlier questions
            decisions = self.router.route([q.text for q in queries], ids, contexts=earlier)
            competences = self.router.competences(decisions)
        else:
            if weights is None:
                weights = self.router.scorer.skill_weights([q.text for q in queries])
            rows = weights if isinstance(weights, SkillRows) else SkillRows(weights)
            decisions = self.router.route_weights(rows, ids)
            competences = self.router.competences(rows)  # the whole batch at once
        if promptings is None:
            promptings = [prompting(query, benchmark) for query in queries]
        elif len(promptings) != len(queries):
            raise BadInput(f"{len(promptings)} promptings for {len(queries)} queries")
        vote = None if self.aggregation == "synthesis" else self.aggregation
        specs = self.pool.specs
        contexts_of: dict[str, tuple[int | None, int]] = {}  # aggregator -> its context (one each)
        asked = []
        for query, routed, expected, how in zip(queries, decisions, competences, promptings, strict=True):
            decision, affinity, anchor = routed, None, None
            if self.sessions is not None:
                decision, affinity, anchor = self.sessions.decide(query, routed, self.router.selection.k)
                if decision.skills != routed.skills:
                    expected = self.router.competence(decision)
            names = [c.expert for c in decision.all_experts]
            for name in names:
                if name not in specs:
                    self.pool.spec(name)  # an unknown expert is an error, named
            competence = {e: expected[e] for e in names if e in expected}
            aggregator = self.aggregator_for(decision)
            context = contexts_of.get(aggregator)
            if context is None:
                context = contexts_of[aggregator] = aggregator_context(
                    self.pool.spec(aggregator), self.max_tokens, self.synthesis
                )
            asked.append(
                Asked(
                    query,
                    decision,
                    how,
                    aggregator,
                    competence,
                    vote=vote,
                    sample=sample,
                    method=method,
                    router=self.router,
                    item=item_of(query, self.items),
                    history=shown(query, decision, how.prompt, specs),
                    aggregator_context=context,
                    affinity=affinity,
                    anchor=anchor,
                )
            )
        return asked

    def _traced(self) -> dict[str, object]:
        """The attributes every stage's span carries: the pool and how it is asked."""
        return {
            "coe.pool": self.pool.name,
            "coe.policy": self.router.policy_name,
            "coe.k": self.router.selection.k,
            "coe.aggregation": self.aggregation,
        }

    def plan(self, tasks: Sequence[Task]) -> Plan:
        with tracing.span("coe.plan", {"coe.tasks": len(tasks)}) as span:
            made = self._plan(tasks)
            tracing.note(span, {"coe.phases": len(made.phases), "coe.loads_planned": made.predicted_loads})
        return made

    def _plan(self, tasks: Sequence[Task]) -> Plan:
        return make_plan(
            tasks,
            self.pool.specs,
            budget_mb=self.budget_mb,
            footprints=self.footprints,
            devices=self.devices,
            aggregators={t.model for t in tasks if t.after},
        )

    def run(
        self, queries: Sequence[Query], benchmark: Benchmark | None = None, *, run_id: str | None = None
    ) -> list[Answer]:
        """Answer every query: route, then ``answer``. One whose experts all failed gets ``error`` set."""
        with tracing.span("coe.pipeline", {**self._traced(), "coe.questions": len(queries)}):
            started = time.perf_counter()
            self._emit(ProgressEvent(kind="route_start", total=len(queries)))
            asked = self.ask(queries, benchmark)
            routed = time.perf_counter() - started
            self._emit(ProgressEvent(kind="route_done", done=len(asked), total=len(queries), seconds=routed))
            run_id = run_id or _run_id([q.id for q in queries])
            return self.answer(asked, run_id=run_id, route_seconds=routed / len(asked)).answers

    def answer(self, asked: Sequence[Asked], *, run_id: str, route_seconds: float = 0.0) -> Answered:
        """Generate and aggregate decided records, one answer each, in order: plan the task graph
        (expert tasks shared by the records that ask them, each model loaded once), run it, and
        build each answer from the result. Cascades climb in rounds unless ``whole_ladders``."""
        if not asked:
            return Answered([], RunMetrics())
        answered = self._answer_all(asked, run_id, route_seconds)
        self._remember(asked, answered.answers)
        return answered

    def _answer_all(self, asked: Sequence[Asked], run_id: str, route_seconds: float) -> Answered:
        if not self.whole_ladders and any(one.decision.later for one in asked):
            return self._climb(asked, run_id, route_seconds)
        with paused_gc():  # bulk, CPU-bound: no engine is waited on here (nor below, building answers)
            graph = task_graph(
                asked, whole_ladders=self.whole_ladders, logprobs=self.logprobs, temperature=self.temperature
            )
            plan = self.plan(graph.tasks)
        log.info(
            "pipeline: %d record(s), %d task(s), %d phase(s), %d load(s) planned",
            len(asked),
            len(graph.tasks),
            len(plan.phases),
            plan.predicted_loads,
        )
        composer = limited(voters_only(compose(graph.jobs, self.synthesis), graph.ladders), self.max_tokens)
        with tracing.span("coe.run", {"coe.tasks": len(graph.tasks), "coe.phases": len(plan.phases)}):
            result = self.executor().run(plan, graph.tasks, self.pool.specs, composer, run_id=run_id)
        tasks = len(graph.tasks)
        del graph, plan, composer  # the requests are done with: the answers are built in their memory
        answers = self._answers(asked, result, route_seconds)
        return Answered(answers, result.metrics, tasks)

    def _remember(self, asked: Sequence[Asked], answers: Sequence[Answer]) -> None:
        """Keep the session state of every chat turn that was answered (a failed turn keeps none)."""
        if self.sessions is None:
            return
        for one, answer in zip(asked, answers, strict=True):
            if one.anchor is not None and answer.error is None:
                self.sessions.remember(one.query, answer.text, one.anchor)

    def _answers(self, asked: Sequence[Asked], result: RunResult, route_seconds: float) -> list[Answer]:
        """Each record's answer from the run's result, under one span: ``coe.aggregate`` with
        how many answers the aggregator wrote, were skipped (the experts agreed) or voted, or
        ``coe.skip`` when every aggregation was skipped."""
        costs = {name: spec.cost for name, spec in self.pool.specs.items()}
        with paused_gc(), tracing.span("coe.aggregate", {"coe.questions": len(asked)}) as span:
            answers = build_answers(asked, result, pool=self.pool.name, route_seconds=route_seconds, costs=costs)
            found = tracing.trace_id()
            if found is not None:
                answers = [answer.traced(found) for answer in answers]
            if span is not None:
                outcomes = Counter(answer.trace.outcome for answer in answers)
                tracing.note(span, {f"coe.aggregations.{name}": n for name, n in outcomes.items()})
                if outcomes and set(outcomes) == {"skipped"}:
                    span.update_name("coe.skip")
        return answers

    def executor(self) -> Executor:
        return self.placement.executor(
            self.engine_factory,
            self.store,
            self.progress,
            self.warm,
            self.cores,
            on_delta=self.on_delta,
            skip=self.skip,
            cache=self.cache,
            cache_reads=self.cache_reads,
        )

    def _climb(self, asked: Sequence[Asked], run_id: str, route_seconds: float) -> Answered:
        """A batch with cascades in rounds (``orchestrator.pipeline.rounds``), then its votes or aggregations."""
        by_task = {one.aggregate_task: one for one in asked}
        by_id = {one.query.id: one for one in asked}

        def hear(question_id: str, expert: str, generation: Generation) -> Heard:
            from orchestrator.pipeline.answering import expert_answer

            one = by_id[question_id]
            return heard(one, expert_answer(one, expert, generation))

        climbs = {
            one.aggregate_task: Climb(one, list(one.decision.expert_names), list(one.decision.expert_names))
            for one in asked
        }
        rounds = Rounds(self.executor(), self.plan, self.pool.specs, hear)
        result = rounds.run(climbs, run_id)
        done = [climbed(by_task[t], c.asked, c.voters, tuple(c.escalations)) for t, c in climbs.items()]
        synthesised = [one for one in done if one.vote is None]
        if synthesised:
            inputs = {
                one.aggregate_task: {
                    t: result.generations[t]
                    for e, t in one.expert_tasks.items()
                    if e in (one.voters or ()) and t in result.generations
                }
                for one in synthesised
            }
            jobs = {one.aggregate_task: synthesis_job(one) for one in synthesised}
            composer = limited(compose(jobs, self.synthesis), self.max_tokens)
            aggregated, composed = rounds.aggregate(
                composer, inputs, {one.aggregate_task: one.aggregator for one in synthesised}, run_id
            )
            result = merge([result, aggregated], run_id)
            result.composed.update(composed)
        return Answered(self._answers(done, result, route_seconds), result.metrics, len(result.generations))

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)


def _first_repeat(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return ""


def _run_id(ids: Sequence[str]) -> str:
    return "run-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def require_answer(answer: Answer) -> Answer:
    if answer.error:
        raise answer.failure()
    return answer
