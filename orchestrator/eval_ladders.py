"""Cascades and costs in ``coe eval`` (``orchestrator.evaluation``).

Eval asks every expert of a cascade's ladder (its first rung and every later rung) once per
question and sample, in the run's one task graph, then *plays* the cascade on those
generations: ``router.calibration.play`` climbs the ladder with the router's own
``escalate`` after each round, by the rules of the pipeline's rounds, so a method's answer,
the experts it asked, its voters and its escalations are those the SDK and the service reach
when they run the rounds for real (they ask only the rungs they climb; eval asks the whole
ladder so that every method reads the same generations). The aggregation task of a cascade
method waits on the whole ladder and is composed from its voters alone (``voters_only``).

Costs: each expert call costs ``orchestrator.pipeline.expert_cost`` of the pool's declared
cost (active parameters per call, price x tokens, or one per call when the pool declares
none); ratios are against the pool's costliest expert alone (``cost_reference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aggregators import ExpertAnswer
from common.requests import Generation
from common.tasks import Compose, Composed, Task
from eval.extract import Extractor
from eval.results import Climbed
from orchestrator.pipeline import expert_cost
from orchestrator.pool import Pool
from router import Heard, RouteDecision, Router
from router.calibration import Outcome, play

NOT_RUN = "not run"


def ladder(decision: RouteDecision) -> list[str]:
    """Every expert a decision may ask: its first rung, then each later rung's (a cascade's ladder)."""
    names = dict.fromkeys(decision.expert_names)
    for rung in decision.later:
        names.update(dict.fromkeys(rung.names))
    return list(names)


def heard(answer: ExpertAnswer) -> Heard:
    """An expert's answer as the cascade reads it (the pipeline's rule: no choice when it failed)."""
    return Heard(answer.expert, answer.choice if answer.ok else None, answer.logprob)


@dataclass(frozen=True)
class Ladder:
    """One cascade decision of one question and sample, with its experts' task ids."""

    router: Router
    decision: RouteDecision
    extract: Extractor
    tasks: Mapping[str, str]
    """Expert of the ladder -> the id of its task."""

    def play(self, generations: Mapping[str, Generation]) -> Outcome:
        """The cascade climbed on these generations (by task id; a missing one is not heard)."""

        def answer(expert: str) -> Heard | None:
            generation = generations.get(self.tasks[expert])
            return heard(ExpertAnswer.from_generation(generation, self.extract)) if generation is not None else None

        return play(self.router, self.decision, answer)


def climbed(outcome: Outcome) -> tuple[Climbed, ...]:
    return tuple(Climbed.model_validate(step.model_dump()) for step in outcome.escalations)


def voters_only(compose: Compose, ladders: Mapping[str, Ladder]) -> Compose:
    """``compose`` whose cascade aggregation tasks (``ladders``, by aggregation task id) read only
    the voters their cascade reaches on the generations they wait on; other tasks unchanged."""

    def composed(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        climb = ladders.get(task.id)
        if climb is None:
            return compose(task, inputs)
        keep = tuple(climb.tasks[e] for e in climb.play(inputs).voters)
        return compose(task.model_copy(update={"after": keep}), {t: inputs[t] for t in keep if t in inputs})

    return composed


def answer_cost(pool: Pool, answer: ExpertAnswer) -> float:
    """What one expert call of the run cost (nothing when it did not run)."""
    if answer.error == NOT_RUN:
        return 0.0
    return expert_cost(pool.spec(answer.expert).cost, answer)


def calls_cost(pool: Pool, answers: Sequence[ExpertAnswer]) -> float:
    return round(sum(answer_cost(pool, a) for a in answers), 6)


def cost_reference(pool: Pool) -> str | None:
    """The pool's costliest expert (the first of equals), or None when the pool declares no costs
    (then a ratio is against one expert call: the best single expert alone)."""
    if pool.cost_unit == "calls":
        return None
    costs = pool.costs
    return max(pool.expert_names, key=lambda e: costs[e])
