"""The pipeline: route -> expert generations -> aggregation, for a batch of queries.

One straight path. Each query is decided once (``Asked``: its route, prompt, aggregator and
the experts' competence); the task graph is built from those records; the batch planner and
executor run it (each model loaded once, the aggregator's work last, composing its prompt from
the expert answers that arrived); and each ``Answer`` is a pure function of the ``Asked``
record and the run's result, which carries what went into every aggregation.

An expert that fails is dropped from that answer with its reason; if the aggregator fails,
the experts' majority vote (ties broken by competence) stands in and the trace says why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from aggregators import (
    AggregationResult,
    AggregatorChoice,
    ExpertAnswer,
    SynthesisJob,
    SynthesisOptions,
    compose,
    majority,
    synthesis_outcome,
)
from batching import Cost, EngineFactory, WarmEngines
from batching.cache import GenerationCache
from batching.executor import Executor, ProgressCallback, ProgressEvent, RunResult
from batching.plan import Plan, make_plan
from batching.runstore import RunStore
from common.errors import BadInput
from common.query import Query
from common.requests import Generation
from common.tasks import Compose, Composed, Task
from eval.benchmarks import LETTER_FORMAT, Benchmark, Question, choice_prompt, with_options
from eval.extract import Extractor, final_line_extractor, letter_extractor
from orchestrator.inputs import FREE_FORMAT
from orchestrator.items import ItemIndex, ItemRef, item_of
from orchestrator.pool import Pool
from orchestrator.rounds import Climb, Rounds, expert_task, merge
from orchestrator.trace import Answer, Timings, Trace
from router import Escalation, Heard, RouteDecision, Router, expected_accuracy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompting:
    """How one query is asked and how its answers are read."""

    prompt: str
    answer_format: str
    extract: Extractor
    shown_question: str


def prompting(query: Query, benchmark: Benchmark | None) -> Prompting:
    if benchmark is not None:
        if not isinstance(query, Question):
            raise BadInput(f"query {query.id!r}: a benchmark prompt needs a benchmark item (eval.Question)")
        return Prompting(
            benchmark.prompt(query),
            benchmark.answer_format,
            lambda text: benchmark.extract(query, text),
            with_options(query),
        )
    if query.options:
        return Prompting(
            choice_prompt(query),
            LETTER_FORMAT,
            letter_extractor(len(query.options)),
            with_options(query),
        )
    return Prompting(
        f"{query.text}\n\nThink it through briefly. {FREE_FORMAT}",
        FREE_FORMAT,
        final_line_extractor,
        query.text,
    )


@dataclass(frozen=True)
class Asked:
    """One query as the pipeline asks it, decided once: used by the task graph and the answer."""

    query: Query
    decision: RouteDecision
    prompting: Prompting
    aggregator: str
    competence: dict[str, float] = field(default_factory=dict)
    """Each chosen expert's expected accuracy on the query's skills, by weight (``router.expected_accuracy``;
    experts the profile knows)."""
    voters: tuple[str, ...] | None = None
    """The experts whose answers the vote and the aggregator read (None: every one asked; a
    cascade that escalated to a strong expert: that expert alone)."""
    escalations: tuple[Escalation, ...] = ()
    """A cascade's decisions after each round."""
    item: ItemRef | None = None
    """The benchmark item its requests ask (``orchestrator.items``), decided by ``ask``."""

    @property
    def asks(self) -> ItemRef:
        """``item``, else the query's own id with no benchmark."""
        return self.item if self.item is not None else ItemRef(self.query.id)

    @property
    def expert_tasks(self) -> dict[str, str]:
        """Chosen expert -> the id of its task."""
        return {name: f"{self.query.id}/expert/{name}" for name in self.decision.expert_names}

    @property
    def aggregate_task(self) -> str:
        return f"{self.query.id}/aggregate"


def task_graph(
    asked: Sequence[Asked], *, aggregate: bool = True, logprobs: bool = False
) -> tuple[list[Task], dict[str, SynthesisJob]]:
    """The expert tasks and, per query, one aggregation task waiting on them (with its job);
    without ``aggregate`` only the expert tasks (their answers are voted on). ``logprobs``: the
    expert requests ask for their tokens' log-probabilities."""
    tasks: list[Task] = []
    jobs: dict[str, SynthesisJob] = {}
    for one in asked:
        tasks += [
            expert_task(one.query.id, name, one.prompting.prompt, logprobs, one.asks) for name in one.expert_tasks
        ]
        if not aggregate:
            continue
        tasks.append(Task(id=one.aggregate_task, model=one.aggregator, after=tuple(one.expert_tasks.values())))
        jobs[one.aggregate_task] = SynthesisJob(
            question_text=one.prompting.shown_question,
            answer_format=one.prompting.answer_format,
            competence=one.competence,
            question_id=one.asks.question_id,
            benchmark=one.asks.benchmark,
        )
    return tasks, jobs


def build_answer(
    one: Asked,
    result: RunResult,
    *,
    pool: str,
    route_seconds: float,
    vote: bool = False,
    costs: Mapping[str, Cost | None] | None = None,
) -> Answer:
    """The answer to one query from its record and the run's result (nothing is composed again).
    With ``vote`` the experts' majority is the answer (ties broken by competence). ``costs``:
    the pool's declared costs, for the trace's ``cost`` (one per call when none)."""
    costs = costs or {}
    scores = {c.expert: c.score for c in one.decision.experts}
    experts = tuple(
        _expert_answer(one, name, task_id, scores[name], result) for name, task_id in one.expert_tasks.items()
    )
    by_task = dict(zip(one.expert_tasks.values(), experts, strict=True))
    generation = result.generations.get(one.aggregate_task)
    composed = result.composed.get(one.aggregate_task)
    aggregation: AggregationResult | None
    error = None
    arrived = [e for e in experts if e.ok and (one.voters is None or e.expert in one.voters)]
    if vote and arrived:
        aggregation = majority(arrived, competence=one.competence)
    elif generation is not None and generation.ok and composed is not None:
        aggregation = synthesis_outcome(composed, generation, by_task, one.prompting.extract)
    else:
        reason = (generation.error if generation is not None else None) or "aggregator did not run"
        if arrived:
            aggregation = majority(arrived).model_copy(update={"fallback": reason})
        else:
            aggregation = None
            causes = "; ".join(dict.fromkeys(f"{e.expert}: {e.error}" for e in experts))
            error = f"no expert answer arrived for question {one.query.id!r} ({causes})"
    trace = Trace(
        question_id=one.query.id,
        pool=pool,
        route=one.decision,
        experts=experts,
        aggregator="majority" if vote else one.aggregator,
        aggregation=aggregation,
        loads=result.metrics.loads,
        escalations=one.escalations,
        cost=sum(expert_cost(costs.get(e.expert), e) for e in experts if e.error != "not run"),
        cache_hits=sum(1 for t in (*one.expert_tasks.values(), one.aggregate_task) if t in result.cached),
        timings=Timings(
            route=route_seconds,
            load=result.metrics.load_seconds,
            experts=max((e.seconds for e in experts), default=0.0),
            aggregate=aggregation.seconds if aggregation is not None else 0.0,
            run=result.metrics.wall_seconds,
        ),
    )
    if aggregation is None:
        return Answer(question_id=one.query.id, text="", error=error, trace=trace)
    return Answer(question_id=one.query.id, text=aggregation.text, choice=aggregation.choice, trace=trace)


def expert_cost(cost: Cost | None, answer: ExpertAnswer) -> float:
    """What one expert call cost: the declared cost of its tokens, or 1 call when none is declared."""
    return cost.of_tokens(answer.tokens_in + answer.tokens_out) if cost is not None else 1.0


def _expert_answer(one: Asked, name: str, task_id: str, score: float, result: RunResult) -> ExpertAnswer:
    generation = result.generations.get(task_id)
    competence = one.competence.get(name)
    if generation is None:
        return ExpertAnswer(expert=name, score=score, competence=competence, error="not run")
    return ExpertAnswer.from_generation(generation, one.prompting.extract, competence, score=score)


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
    aggregation: Literal["synthesis", "majority"] = "synthesis"
    """The aggregator model writes each answer, or the experts' majority is it."""
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
    items: ItemIndex | None = None
    """Finds the benchmark item a free-text query is, for a pool with replay models."""

    def aggregator_for(self, decision: RouteDecision) -> str:
        """The stored selection's best aggregator for the query's top skill, else the pool's."""
        if self.choice is None:
            return self.pool.aggregator.name
        name = self.choice.for_skill(decision.top_skill)
        return name if name in self.pool.specs else self.pool.aggregator.name

    def ask(
        self,
        queries: Sequence[Query],
        benchmark: Benchmark | None = None,
        *,
        weights: Sequence[Mapping[str, float]] | None = None,
    ) -> list[Asked]:
        """Route the batch and decide, once per query, everything its answer depends on.
        ``weights``: the queries' skill weights when the caller already has them (several
        routers over one scorer), else the router's scorer reads them."""
        ids = [q.id for q in queries]
        if not queries:
            raise BadInput("no questions to answer")
        if len(set(ids)) != len(ids):
            raise BadInput(f"question ids must be unique in a batch; repeated: {_first_repeat(ids)!r}")
        if weights is None:
            decisions = self.router.route([q.text for q in queries], ids)
        else:
            decisions = self.router.route_weights(weights, ids)
        profile = self.router.profile
        asked = []
        for query, decision in zip(queries, decisions, strict=True):
            for name in decision.expert_names:
                self.pool.spec(name)  # an unknown expert is an error, named
            expected = expected_accuracy(profile, decision.skills)
            competence = {e: expected[e] for e in decision.expert_names if e in expected}
            item = item_of(query, self.items)
            asked.append(
                Asked(
                    query, decision, prompting(query, benchmark), self.aggregator_for(decision), competence, item=item
                )
            )
        return asked

    def plan(self, tasks: Sequence[Task]) -> Plan:
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
        """Answer every query; one whose experts all failed gets ``error`` set."""
        started = time.perf_counter()
        self._emit(ProgressEvent(kind="route_start", total=len(queries)))
        asked = self.ask(queries, benchmark)
        routed = time.perf_counter() - started
        self._emit(ProgressEvent(kind="route_done", done=len(asked), total=len(queries), seconds=routed))
        route_seconds = routed / len(asked)
        vote = self.aggregation == "majority"
        run_id = run_id or _run_id([q.id for q in queries])
        if any(one.decision.later for one in asked):
            return self._climb(asked, run_id, route_seconds, vote)
        tasks, jobs = task_graph(asked, aggregate=not vote, logprobs=self.logprobs)
        plan = self.plan(tasks)
        log.info(
            "pipeline: %d question(s), %d task(s), %d phase(s), %d load(s) planned",
            len(asked),
            len(tasks),
            len(plan.phases),
            plan.predicted_loads,
        )
        result = self.executor().run(
            plan,
            tasks,
            self.pool.specs,
            _limited(compose(jobs, self.synthesis), self.max_tokens),
            run_id=run_id,
        )
        return [self._answer(one, result, route_seconds, vote) for one in asked]

    def executor(self) -> Executor:
        return Executor(
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

    def _answer(self, one: Asked, result: RunResult, route_seconds: float, vote: bool) -> Answer:
        costs = {name: spec.cost for name, spec in self.pool.specs.items()}
        return build_answer(one, result, pool=self.pool.name, route_seconds=route_seconds, vote=vote, costs=costs)

    def _climb(self, asked: Sequence[Asked], run_id: str, route_seconds: float, vote: bool) -> list[Answer]:
        """A cascade's batch in rounds (``orchestrator.rounds``), then its vote or aggregation."""
        by_id = {one.query.id: one for one in asked}

        def heard(question_id: str, expert: str, generation: Generation) -> Heard:
            answer = ExpertAnswer.from_generation(generation, by_id[question_id].prompting.extract)
            return Heard(expert, answer.choice if answer.ok else None, answer.logprob)

        climbs = {
            q: Climb(one.decision, list(one.decision.expert_names), list(one.decision.expert_names))
            for q, one in by_id.items()
        }
        rounds = Rounds(self.executor(), self.plan, self.pool.specs, self.router.escalate, heard)
        items = {q: one.asks for q, one in by_id.items()}
        result = rounds.run({q: one.prompting.prompt for q, one in by_id.items()}, climbs, run_id, items)
        climbed = [_climbed(one, climbs[one.query.id], self.router) for one in asked]
        if not vote:
            inputs = {
                one.aggregate_task: {
                    t: result.generations[t]
                    for e, t in one.expert_tasks.items()
                    if e in (one.voters or ()) and t in result.generations
                }
                for one in climbed
            }
            jobs = {
                one.aggregate_task: SynthesisJob(
                    one.prompting.shown_question,
                    one.prompting.answer_format,
                    one.competence,
                    one.asks.question_id,
                    one.asks.benchmark,
                )
                for one in climbed
            }
            composer = _limited(compose(jobs, self.synthesis), self.max_tokens)
            aggregated, composed = rounds.aggregate(
                composer, inputs, {one.aggregate_task: one.aggregator for one in climbed}, run_id
            )
            result = merge([result, aggregated], run_id)
            result.composed.update(composed)
        return [self._answer(one, result, route_seconds, vote) for one in climbed]

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)


def _climbed(one: Asked, climb: Climb, router: Router) -> Asked:
    """``one`` after its cascade: every expert it asked, the voters, the escalations."""
    choices = {c.expert: c for c in (*one.decision.experts, *(c for rung in one.decision.later for c in rung.experts))}
    decision = one.decision.model_copy(update={"experts": tuple(choices[e] for e in climb.asked)})
    expected = router.competence(decision)
    return replace(
        one,
        decision=decision,
        competence={e: expected[e] for e in climb.asked if e in expected},
        voters=tuple(climb.voters),
        escalations=tuple(climb.escalations),
    )


def _limited(composer: Compose, max_tokens: int | None) -> Compose:
    """``composer`` with its requests' new tokens capped at ``max_tokens`` (unchanged when None)."""
    if max_tokens is None:
        return composer

    def composed(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        made = composer(task, inputs)
        request = made.request.model_copy(update={"max_tokens": max_tokens})
        return made.model_copy(update={"request": request})

    return composed


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
