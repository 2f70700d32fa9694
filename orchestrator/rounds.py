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
from common.errors import CoeError
from common.requests import Generation, Request
from common.tasks import Compose, Composed, Task
from orchestrator.items import ItemRef
from router import Escalation, Heard, RouteDecision

log = logging.getLogger(__name__)


@dataclass
class Climb:
    """One question's way up its ladder."""

    decision: RouteDecision
    asked: list[str]
    voters: list[str]
    escalations: list[Escalation] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.escalations) + 1

    def next_rung(self) -> tuple[str, ...]:
        later = self.decision.later
        return later[self.answered - 1].names if self.answered - 1 < len(later) else ()


def expert_task(question_id: str, expert: str, prompt: str, logprobs: bool, item: ItemRef | None = None) -> Task:
    """The task of asking ``expert`` question ``question_id``; its request names the benchmark item
    it asks (``item``; default: the question's own id, no benchmark)."""
    task_id = f"{question_id}/expert/{expert}"
    item = item if item is not None else ItemRef(question_id)
    request = Request.user(task_id, prompt, question_id=item.question_id, benchmark=item.benchmark, logprobs=logprobs)
    return Task(id=task_id, model=expert, request=request)


def predicted_loads(first: Plan, decisions: Sequence[RouteDecision]) -> int:
    """Loads of the first round's plan, plus one per model of each later round if every question
    escalated (an upper bound: a round runs only the models its escalated questions need)."""
    later = 0
    for index in range(max((len(d.later) for d in decisions), default=0)):
        later += len({e for d in decisions if index < len(d.later) for e in d.later[index].names})
    return first.predicted_loads + later


def merge(results: Sequence[RunResult], run_id: str) -> RunResult:
    """The rounds' results as one (generations by task, metrics added up)."""
    metrics = RunMetrics()
    for result in results:
        m = result.metrics
        for name in ("loads", "load_seconds", "generate_seconds", "unload_seconds", "engine_seconds", "tokens_in"):
            setattr(metrics, name, getattr(metrics, name) + getattr(m, name))
        for name in ("tokens_out", "generate_calls", "phases_run", "phases_skipped", "resumed", "cache_hits"):
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
    """Runs the rounds of a batch of cascade questions (``Pipeline`` builds it)."""

    executor: Executor
    plan: Callable[[Sequence[Task]], Plan]
    specs: Mapping[str, ExpertSpec]
    escalate: Callable[[RouteDecision, Sequence[Heard], int], Escalation]
    heard: Callable[[str, str, Generation], Heard]
    """(question id, expert, its generation) -> the answer as the cascade reads it."""

    def run(
        self,
        prompts: Mapping[str, str],
        climbs: Mapping[str, Climb],
        run_id: str,
        items: Mapping[str, ItemRef] | None = None,
    ) -> RunResult:
        """Climb every question's ladder; returns the experts' generations of all rounds. ``items``:
        the benchmark item each question asks (default: its own id)."""
        items = items or {}
        results: list[RunResult] = []
        pending = {qid: tuple(c.decision.expert_names) for qid, c in climbs.items()}
        round_no = 0
        while pending:
            round_no += 1
            tasks = [
                expert_task(q, e, prompts[q], True, items.get(q)) for q, experts in pending.items() for e in experts
            ]
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
            result = self.executor.run(plan, tasks, self.specs, _no_compose, run_id=f"{run_id}-r{round_no}")
            results.append(result)
            generations = {k: v for r in results for k, v in r.generations.items()}
            escalated: dict[str, tuple[str, ...]] = {}
            for qid in pending:
                climb = climbs[qid]
                heard = {
                    e: self.heard(qid, e, generation)
                    for e in climb.asked
                    if (generation := generations.get(f"{qid}/expert/{e}")) is not None
                }
                if round_no > 1:  # the rung just answered joins the vote, or replaces it if it answered
                    rung = climb.decision.later[round_no - 2]
                    if not rung.replaces:
                        climb.voters += rung.names
                    elif any(heard[e].choice is not None for e in rung.names if e in heard):
                        climb.voters = list(rung.names)
                decided = self.escalate(climb.decision, list(heard.values()), round_no)
                climb.escalations.append(decided)
                if decided.escalate:
                    rung = climb.decision.later[round_no - 1]
                    climb.asked += rung.names
                    escalated[qid] = rung.names
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
        generations of earlier rounds; a task with nothing to compose from fails, named."""
        tasks, composed, failed = [], {}, {}
        for task_id, given in inputs.items():
            try:
                made = composer(Task(id=task_id, model=models[task_id], after=tuple(given)), given)
            except CoeError as exc:
                failed[task_id] = str(exc)
                continue
            composed[task_id] = made
            tasks.append(Task(id=task_id, model=models[task_id], request=made.request))
        if not tasks:
            return RunResult(run_id=run_id, generations={}, failed=failed, metrics=RunMetrics()), composed
        result = self.executor.run(self.plan(tasks), tasks, self.specs, _no_compose, run_id=f"{run_id}-agg")
        return replace_failed(result, failed), composed


def replace_failed(result: RunResult, failed: Mapping[str, str]) -> RunResult:
    return result.model_copy(update={"failed": {**result.failed, **failed}}) if failed else result


def _no_compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    raise CoeError(f"task {task.id!r}: a cascade round composes nothing")


__all__ = ["Climb", "Rounds", "expert_task", "merge", "predicted_loads"]
