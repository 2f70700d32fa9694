"""The pipeline: route -> expert generations -> aggregation, for a batch of questions.

Every model runs through the batch planner and executor, so a batch loads each model
once; the aggregator's work is the last phase and composes its prompt from the expert
answers that arrived. An expert that fails is dropped from that answer with its reason;
if the aggregator fails, the answer falls back to the experts' majority vote (ties broken
by competence) and says so in the trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aggregators import AggregatorChoice, ExpertAnswer, SynthesisJob, SynthesisOptions, compose, majority
from batching import Engine, ExpertSpec
from common.requests import Request
from common.tasks import Task
from batching.executor import Executor, ProgressCallback, RunResult
from batching.plan import make_plan
from batching.runstore import RunStore
from common.errors import BadInput, GenerationFailed
from eval.benchmarks import LETTER_FORMAT, Benchmark, Question, choice_prompt, with_options
from eval.extract import Extractor, final_line_extractor, letter_extractor
from orchestrator.inputs import FREE_FORMAT
from orchestrator.pool import Pool
from orchestrator.trace import AggregatorCall, Answer, ExpertCall, Trace
from router import RouteDecision, Router

log = logging.getLogger(__name__)

AGGREGATE = "aggregate"


@dataclass(frozen=True)
class Prompting:
    """How one question is asked and how its answers are read."""

    prompt: str
    answer_format: str
    extract: Extractor
    shown_question: str


def prompting(question: Question, benchmark: Benchmark | None) -> Prompting:
    if benchmark is not None:
        return Prompting(
            benchmark.prompt(question), benchmark.answer_format,
            lambda text: benchmark.extract(question, text), with_options(question),
        )
    if question.options:
        return Prompting(
            choice_prompt(question), LETTER_FORMAT, letter_extractor(len(question.options)),
            with_options(question),
        )
    return Prompting(
        f"{question.text}\n\nThink it through briefly. {FREE_FORMAT}", FREE_FORMAT,
        final_line_extractor, question.text,
    )


@dataclass
class Pipeline:
    pool: Pool
    router: Router
    engine_factory: Callable[[ExpertSpec], Engine]
    budget_mb: float
    footprints: dict[str, float] = field(default_factory=dict)
    devices: int = 1
    store: RunStore | None = None
    progress: ProgressCallback | None = None
    synthesis: SynthesisOptions = SynthesisOptions(order="competence")
    choice: AggregatorChoice | None = None

    def aggregator_for(self, decision: RouteDecision) -> str:
        """The stored selection's best aggregator for the question's top skill, else the pool's."""
        if self.choice is None:
            return self.pool.aggregator.name
        name = self.choice.for_skill(decision.top_skill)
        return name if name in self.pool.specs else self.pool.aggregator.name

    def run(
        self, questions: Sequence[Question], benchmark: Benchmark | None = None, *, run_id: str | None = None
    ) -> list[Answer]:
        """Answer every question; a question whose experts all failed gets ``error`` set."""
        ids = [q.id for q in questions]
        if not questions:
            raise BadInput("no questions to answer")
        if len(set(ids)) != len(ids):
            raise BadInput(f"question ids must be unique in a batch; repeated: {_first_repeat(ids)!r}")
        started = time.perf_counter()
        decisions = self.router.route([q.text for q in questions], ids)
        route_s = time.perf_counter() - started
        asked = {q.id: prompting(q, benchmark) for q in questions}
        tasks, jobs = self.tasks(questions, decisions, asked)
        composer = compose(jobs, self.synthesis)
        plan = make_plan(
            tasks, self.pool.specs, budget_mb=self.budget_mb, footprints=self.footprints, devices=self.devices,
            aggregators={t.model for t in tasks if t.after},
        )
        log.info("pipeline: %d question(s), %d task(s), %d phase(s), %d load(s) planned",
                 len(questions), len(tasks), len(plan.phases), plan.predicted_loads)
        with Executor(self.engine_factory, self.store, self.progress) as executor:
            result = executor.run(plan, tasks, self.pool.specs, composer, run_id=run_id or _run_id(ids))
        return [
            self._answer(q, d, asked[q.id], result, composer, route_s / len(questions))
            for q, d in zip(questions, decisions)
        ]

    def tasks(
        self, questions: Sequence[Question], decisions: Sequence[RouteDecision],
        asked: dict[str, Prompting] | None = None, benchmark: Benchmark | None = None,
    ) -> tuple[list[Task], dict[str, SynthesisJob]]:
        """The expert tasks and aggregation tasks (with their synthesis jobs) for a routed batch."""
        asked = asked or {q.id: prompting(q, benchmark) for q in questions}
        tasks: list[Task] = []
        jobs: dict[str, SynthesisJob] = {}
        for question, decision in zip(questions, decisions):
            how = asked[question.id]
            aggregator = self.aggregator_for(decision)
            expert_ids = []
            for name in decision.expert_names:
                self.pool.spec(name)  # an unknown expert is an error, named
                task_id = f"{question.id}/{name}"
                request = Request.user(task_id, how.prompt, question_id=question.id)
                tasks.append(Task(id=task_id, model=name, request=request))
                expert_ids.append(task_id)
            agg_id = f"{question.id}/{AGGREGATE}"
            tasks.append(Task(id=agg_id, model=aggregator, after=tuple(expert_ids)))
            skill = decision.top_skill
            jobs[agg_id] = SynthesisJob(
                question_text=how.shown_question,
                answer_format=how.answer_format,
                extract=how.extract,
                competence=lambda expert, s=skill: self.router.profile.accuracy(expert, s)
                if expert in self.router.profile.experts else None,
                question_id=question.id,
            )
        return tasks, jobs

    def _answer(self, question, decision: RouteDecision, how: Prompting, result: RunResult, composer,
                route_s: float) -> Answer:
        scores = {c.expert: c.score for c in decision.experts}
        calls = []
        for name in decision.expert_names:
            generation = result.generations.get(f"{question.id}/{name}")
            if generation is None:
                calls.append(ExpertCall(expert=name, score=scores[name], error="not run"))
                continue
            calls.append(ExpertCall(
                expert=name, score=scores[name], text=generation.text,
                choice=how.extract(generation.text) if generation.ok else None,
                tokens_in=generation.tokens_in, tokens_out=generation.tokens_out,
                seconds=generation.seconds, error=generation.error,
            ))
        agg_id = f"{question.id}/{AGGREGATE}"
        generation = result.generations.get(agg_id)
        aggregator = self.aggregator_for(decision)
        trace = Trace(
            question_id=question.id, pool=self.pool.name, policy=decision.policy,
            route=decision.model_dump(mode="json"), experts=calls, loads=result.metrics.loads,
            stage_seconds={
                "route": route_s,
                "experts": max((c.seconds for c in calls), default=0.0),
                "aggregate": generation.seconds if generation is not None else 0.0,
                "run": result.metrics.wall_seconds,
            },
        )
        error = None
        if generation is not None and generation.ok and agg_id not in composer.used:
            # resumed from the run store: rebuild the (deterministic) prompt for the trace
            inputs = {f"{question.id}/{n}": result.generations[f"{question.id}/{n}"]
                      for n in decision.expert_names if f"{question.id}/{n}" in result.generations}
            composer(Task(id=agg_id, model=aggregator, after=tuple(inputs)), inputs)
        if generation is not None and generation.ok:
            agg = composer.result(agg_id, generation)
            trace.aggregator = AggregatorCall(
                model=aggregator, method=agg.method, prompt=_prompt_of(composer, agg_id), text=agg.text,
                tokens_in=agg.tokens_in, tokens_out=agg.tokens_out, seconds=agg.seconds,
            )
            text, choice = agg.text, agg.choice
        else:
            reason = (generation.error if generation is not None else None) or "aggregator did not run"
            arrived = [
                ExpertAnswer(expert=c.expert, text=c.text, choice=c.choice) for c in calls if c.error is None
            ]
            if not arrived:
                error = f"no expert answer arrived for question {question.id!r}: {reason}"
                text, choice = "", None
            else:
                competence = {c.expert: self.router.profile.accuracy(c.expert, decision.top_skill)
                              for c in calls if c.expert in self.router.profile.experts}
                vote = majority(arrived, competence=competence or None)
                text, choice = vote.text, vote.choice
                trace.aggregator = AggregatorCall(model=aggregator, method=f"{vote.method} (fallback)",
                                                  text=vote.text, error=reason)
        return Answer(question_id=question.id, text=text, choice=choice, trace=trace, error=error)


def _prompt_of(composer, task_id: str) -> str:
    request = composer.requests.get(task_id)
    return request.text if request is not None else ""


def _first_repeat(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return ""


def _run_id(ids: Sequence[str]) -> str:
    import hashlib

    return "run-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def require_answer(answer: Answer) -> Answer:
    if answer.error:
        raise GenerationFailed(answer.error)
    return answer
