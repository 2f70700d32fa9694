"""A cascade as rounds: every question's first rung batched together, then only the escalated
questions' next rung, and so on; the aggregation (or the vote) last.

Each round is one plan and one executor run, so a model is loaded at most once per round it
serves (a warm session may keep it between rounds). Its run id is the run's with ``-r<N>``, so
a run that is killed and started again finds every finished round in the run store, decides
the same escalations from the same answers, and runs only what is left.

After each round the router's ``escalate`` reads the answers of each question still climbing
(choice and, where the engine gave them, token log-probabilities); its decision is kept in
the answer's trace. The experts whose answers vote are those of every rung asked, except that
a rung that ``replaces`` (a strong expert above cheap ones) leaves only its own, when it gave
a readable answer (else the earlier voters stand).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from batching.executor import Executor, RunResult
from batching.plan import Plan
from batching.results import RunMetrics
from batching.spec import ExpertSpec
from common import tracing
from common.errors import CoeError
from common.requests import Generation
from common.tasks import Compose, Composed, Task
from orchestrator.pipeline.asked import Asked
from orchestrator.pipeline.graph import expert_task
from orchestrator.pipeline.task_ids import expert_task_id
from router import Escalation, Heard, RouteDecision

log = logging.getLogger(__name__)


@dataclass
class Climb:
    """One record's way up its ladder."""

    one: Asked
    asked: list[str]
    voters: list[str]
    escalations: list[Escalation] = field(default_factory=list)

    @property
    def decision(self) -> RouteDecision:
        return self.one.decision

    @property
    def answered(self) -> int:
        return len(self.escalations) + 1

    def next_rung(self) -> tuple[str, ...]:
        later = self.decision.later
        return later[self.answered - 1].names if self.answered - 1 < len(later) else ()

    def task(self, expert: str) -> Task:
        one = self.one
        return expert_task(
            one.query.id,
            expert,
            one.prompting.prompt,
            sample=one.sample,
            logprobs=True,
            item=one.asks,
            history=one.shown_to(expert),
        )


def predicted_loads(first: Plan, decisions: Sequence[RouteDecision]) -> int:
    """Loads of the first round's plan, plus one per model of each later round if every question
    escalated (an upper bound: a round runs only the models its escalated questions need)."""
    later = 0
    for index in range(max((len(d.later) for d in decisions), default=0)):
        later += len({e for d in decisions if index < len(d.later) for e in d.later[index].names})
    return first.predicted_loads + later


SUMMED = (
    "loads",
    "load_seconds",
    "generate_seconds",
    "unload_seconds",
    "engine_seconds",
    "tokens_in",
    "tokens_out",
    "generate_calls",
    "phases_run",
    "phases_skipped",
    "resumed",
    "cache_hits",
    "skipped",
)
"""The run metrics that rounds add up."""


def merge(results: Sequence[RunResult], run_id: str) -> RunResult:
    """The rounds' results as one (generations by task, metrics added up)."""
    metrics = RunMetrics()
    for result in results:
        m = result.metrics
        for name in SUMMED:
            setattr(metrics, name, getattr(metrics, name) + getattr(m, name))
        metrics.cache_misses += m.cache_misses
        metrics.failed += m.failed
        metrics.wall_seconds += m.wall_seconds
        metrics.overhead_seconds += m.overhead_seconds
        for model, count in m.loads_per_model.items():
            metrics.loads_per_model[model] = metrics.loads_per_model.get(model, 0) + count
        for model, count in m.requests_per_model.items():
            metrics.requests_per_model[model] = metrics.requests_per_model.get(model, 0) + count
    return RunResult(
        run_id=run_id,
        generations={k: v for r in results for k, v in r.generations.items()},
        failed={k: v for r in results for k, v in r.failed.items()},
        composed={k: v for r in results for k, v in r.composed.items()},
        cached={t for r in results for t in r.cached},
        metrics=metrics,
    )


@dataclass
class Rounds:
    """Runs the rounds of a batch of cascade records (``Pipeline`` builds it)."""

    executor: Executor
    plan: Callable[[Sequence[Task]], Plan]
    specs: Mapping[str, ExpertSpec]
    heard: Callable[[str, str, Generation], Heard]
    """(question id, expert, its generation) -> the answer as the cascade reads it."""

    def run(self, climbs: Mapping[str, Climb], run_id: str) -> RunResult:
        """Climb every record's ladder (``climbs`` by any key unique to a record); returns the
        experts' generations of all rounds. A record's escalation is its router's."""
        results: list[RunResult] = []
        pending = {key: tuple(c.decision.expert_names) for key, c in climbs.items()}
        round_no = 0
        while pending:
            round_no += 1
            tasks = list({t.id: t for key, names in pending.items() for t in map(climbs[key].task, names)}.values())
            plan = self.plan(tasks)
            if round_no == 1:
                decisions = [c.decision for c in climbs.values()]
                log.info("cascade: at most %d load(s) over every round", predicted_loads(plan, decisions))
            log.info(
                "cascade round %d: %d question(s), %d task(s), %d load(s) planned",
                round_no,
                len(pending),
                len(tasks),
                plan.predicted_loads,
            )
            traced = {"coe.round": round_no, "coe.questions": len(pending), "coe.tasks": len(tasks)}
            with tracing.span("coe.run", traced):
                result = self.executor.run(plan, tasks, self.specs, _no_compose, run_id=f"{run_id}-r{round_no}")
            results.append(result)
            generations = {k: v for r in results for k, v in r.generations.items()}
            escalated: dict[str, tuple[str, ...]] = {}
            for key in pending:
                climb = climbs[key]
                qid, sample = climb.one.query.id, climb.one.sample
                heard = {
                    e: self.heard(qid, e, generation)
                    for e in climb.asked
                    if (generation := generations.get(expert_task_id(qid, e, sample))) is not None
                }
                if round_no > 1:  # the rung just answered joins the vote, or replaces it if it answered
                    rung = climb.decision.later[round_no - 2]
                    if not rung.replaces:
                        climb.voters += rung.names
                    elif any(heard[e].choice is not None for e in rung.names if e in heard):
                        climb.voters = list(rung.names)
                assert climb.one.router is not None, "a cascade record carries the router that decided it"
                decided = climb.one.router.escalate(climb.decision, list(heard.values()), round_no)
                climb.escalations.append(decided)
                if decided.escalate:
                    rung = climb.decision.later[round_no - 1]
                    climb.asked += rung.names
                    escalated[key] = rung.names
            pending = escalated
        return merge(results, run_id)

    def aggregate(
        self,
        composer: Compose,
        inputs: Mapping[str, Mapping[str, Generation]],
        models: Mapping[str, str],
        run_id: str,
    ) -> tuple[RunResult, dict[str, Composed]]:
        """The aggregation round: each task's request composed (by ``composer``) from its voters'
        generations of earlier rounds; a task with nothing to compose from fails, named; one whose
        voters agree is not run (its ``Composed`` record says so, and their answer stands)."""
        tasks, composed, failed, agreed = [], {}, {}, 0
        for task_id, given in inputs.items():
            try:
                made = composer(Task(id=task_id, model=models[task_id], after=tuple(given)), given)
            except CoeError as exc:
                failed[task_id] = str(exc)
                continue
            composed[task_id] = made
            if made.skipped is not None:
                agreed += 1
                continue
            tasks.append(Task(id=task_id, model=models[task_id], request=made.request))
        if not tasks:
            result = RunResult(run_id=run_id, generations={}, failed=failed, metrics=RunMetrics(skipped=agreed))
            return result, composed
        plan = self.plan(tasks)
        with tracing.span("coe.run", {"coe.role": "aggregator", "coe.tasks": len(tasks)}):
            result = self.executor.run(plan, tasks, self.specs, _no_compose, run_id=f"{run_id}-agg")
        result.metrics.skipped += agreed
        return replace_failed(result, failed), composed


def replace_failed(result: RunResult, failed: Mapping[str, str]) -> RunResult:
    return result.model_copy(update={"failed": {**result.failed, **failed}}) if failed else result


def _no_compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    raise CoeError(f"task {task.id!r}: a cascade round composes nothing")


__all__ = ["Climb", "Rounds", "merge", "predicted_loads"]
