"""From a run's generations to each query's ``Answer``: the experts' answers, the vote or the
aggregator's, the trace and the cost. Every door's answers are made here, by one set of rules:

- answers are compared by the query's judge (``Prompting.judge``): votes, agreement, the
  cascade's leader;
- a record that votes (``Asked.vote``) gets the experts' majority, or their competence-weighted
  vote when every voter's competence is known (else the majority);
- an aggregation that failed or did not run is replaced by the experts' majority, and the
  trace says why;
- a cascade asked whole is played on its generations (``play``) by the router's own
  escalation, so it reaches the decisions its rounds would reach;
- an expert call costs its declared cost of the tokens, or one call when none is declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from aggregators import AggregationResult, ExpertAnswer, majority, synthesis_outcome, weighted
from batching import Cost
from batching.executor import RunResult
from common.requests import Generation
from orchestrator.pipeline.asked import Asked
from orchestrator.pipeline.conversation import cut_counts
from orchestrator.pipeline.task_ids import expert_task_id
from orchestrator.pipeline.trace import Answer, ConversationTrace, Timings, Trace
from router import Heard
from router.calibration import Outcome
from router.calibration import play as play_policy

NOT_RUN = "not run"


def expert_cost(cost: Cost | None, answer: ExpertAnswer) -> float:
    """What one expert call cost: the declared cost of its tokens, or 1 call when none is
    declared; nothing when it did not run."""
    if answer.error == NOT_RUN:
        return 0.0
    return cost.of_tokens(answer.tokens_in + answer.tokens_out) if cost is not None else 1.0


def expert_answer(one: Asked, name: str, generation: Generation | None) -> ExpertAnswer:
    """One expert's answer to ``one`` (``not run`` when it has no generation)."""
    score = next((c.score for c in one.decision.all_experts if c.expert == name), None)
    return _expert_answer(one, name, generation, score)


def _expert_answer(one: Asked, name: str, generation: Generation | None, score: float | None) -> ExpertAnswer:
    competence = one.competence.get(name)
    if generation is None:
        return ExpertAnswer(expert=name, score=score, competence=competence, error=NOT_RUN)
    return ExpertAnswer.from_generation(generation, one.prompting.extract, competence, score=score)


def heard(one: Asked, answer: ExpertAnswer) -> Heard:
    """An expert's answer as the cascade reads it: the judge's key of its choice (none when it failed)."""
    return Heard(answer.expert, one.prompting.judge.key(answer.choice) if answer.ok else None, answer.logprob)


def play(one: Asked, generations: Mapping[str, Generation]) -> Outcome:
    """The cascade of ``one`` climbed on these generations (an expert without one is not heard)."""

    def hear(expert: str) -> Heard | None:
        generation = generations.get(expert_task_id(one.query.id, expert, one.sample))
        return heard(one, expert_answer(one, expert, generation)) if generation is not None else None

    assert one.router is not None, "a cascade record carries the router that decided it"
    return play_policy(one.router, one.decision, hear)


def climbed(one: Asked, asked: list[str], voters: list[str], escalations: tuple) -> Asked:
    """``one`` after its cascade: every expert it asked, the voters, the escalations."""
    decision = one.decision
    choices = {c.expert: c for c in decision.all_experts}
    decision = decision.model_copy(update={"experts": tuple(choices[e] for e in asked)})
    competence = one.router.competence(decision) if one.router is not None else one.competence
    return replace(
        one,
        decision=decision,
        competence={e: competence[e] for e in asked if e in competence},
        voters=tuple(voters),
        escalations=tuple(escalations),
    )


class Shared:
    """What the records of one batch share as their answers are built (``build_answers``): each
    task's expert answer, read from its generation once and copied for every other competence
    and score a record gives it; each vote, counted once for all the records whose voters'
    answers are the same generations with the same competences (the router's score, which a
    vote does not read, may differ: an evaluation's single-best and category baselines often
    pick one expert); and the whole answer of records that differ only in their method (an
    evaluation's ours, all-majority and oracle vote on one decision)."""

    def __init__(self) -> None:
        self.read: dict[str, ExpertAnswer] = {}
        self.answers: dict[tuple[str, float | None, float | None], ExpertAnswer] = {}
        self.votes: dict[tuple, AggregationResult] = {}
        self.records: dict[tuple, Answer] = {}
        self.voted: dict[int, tuple[str, float | None]] = {}
        """id of an answer ``expert`` made -> what a vote reads of it: its task and competence."""

    @staticmethod
    def record_key(one: Asked) -> tuple | None:
        """What a voting record's answer depends on, its parts by identity (the method names only
        an aggregation task, which a vote has not); None for a record not shared so (a cascade
        climbs per record, an aggregator writes per method)."""
        if one.vote is None or one.decision.later:
            return None
        parts = (one.query, one.decision, one.prompting, one.competence, one.history, one.affinity)
        return (one.vote, one.sample, one.aggregator, one.voters, one.escalations, *map(id, parts))

    def expert(
        self, one: Asked, name: str, task: str, generations: Mapping[str, Generation], score: float | None
    ) -> ExpertAnswer:
        """``one``'s answer of expert ``name`` (its task's generation in ``generations``; none:
        not run)."""
        competence = one.competence.get(name)
        key = (task, competence, score)
        found = self.answers.get(key)
        if found is None:
            first = self.read.get(task)
            if first is None:
                found = self.read[task] = _expert_answer(one, name, generations.get(task), score)
            elif first.competence == competence and first.score == score:
                found = first
            else:  # the same generation, read once: only the router's numbers differ
                found = first.model_copy(update={"competence": competence, "score": score})
            self.answers[key] = found
            self.voted[id(found)] = (task, competence)  # kept in ``answers``: the id stays its own
        return found

    def vote(self, one: Asked, arrived: list[ExpertAnswer]) -> AggregationResult:
        """``one``'s vote of answers made by ``expert``. They carry the record's own competence,
        so the same generations, competences, vote and judge make the same result."""
        voted = self.voted
        key = (one.vote, one.prompting.judge, len(one.query.options), *(voted[id(a)] for a in arrived))
        found = self.votes.get(key)
        if found is None:
            found = self.votes[key] = _vote(one, arrived)
        return found


def build_answers(
    asked: Sequence[Asked],
    result: RunResult,
    *,
    pool: str,
    route_seconds: float,
    costs: Mapping[str, Cost | None] | None = None,
) -> list[Answer]:
    """``build_answer`` of each record, in order, sharing what they have in common (``Shared``)."""
    shared = Shared()
    answers = []
    for one in asked:
        key = shared.record_key(one)
        answer = shared.records.get(key) if key is not None else None
        if answer is None:
            answer = build_answer(one, result, pool=pool, route_seconds=route_seconds, costs=costs, shared=shared)
            if key is not None:
                shared.records[key] = answer
        answers.append(answer)
    return answers


def build_answer(
    one: Asked,
    result: RunResult,
    *,
    pool: str,
    route_seconds: float,
    costs: Mapping[str, Cost | None] | None = None,
    shared: Shared | None = None,
) -> Answer:
    """The answer to one record from the run's result (nothing is composed again). ``costs``:
    the pool's declared costs, for the trace's ``cost`` (one per call when none); ``shared``:
    what the batch's records share (``build_answers``)."""
    if one.decision.later and one.voters is None:  # a cascade asked whole: climb it now
        outcome = play(one, result.generations)
        one = climbed(one, list(outcome.asked), list(outcome.voters), outcome.escalations)
    shared = shared if shared is not None else Shared()
    costs = costs or {}
    judge = one.prompting.judge
    scores: dict[str, float] = {}
    for choice in one.decision.all_experts:
        scores.setdefault(choice.expert, choice.score)  # the first, as ``expert_answer`` reads it
    tasks = one.expert_tasks
    generations = result.generations
    experts = tuple(shared.expert(one, name, task, generations, scores.get(name)) for name, task in tasks.items())
    arrived = [e for e in experts if e.ok and (one.voters is None or e.expert in one.voters)]
    aggregation: AggregationResult | None = None
    error = None
    if one.vote is not None:
        aggregation = shared.vote(one, arrived) if arrived else None
    else:
        generation = result.generations.get(one.aggregate_task)
        composed = result.composed.get(one.aggregate_task)
        if composed is not None and composed.skipped is not None and arrived:
            agreed = majority(arrived, competence=one.competence, judge=judge)
            aggregation = agreed.model_copy(update={"method": "consensus", "skipped": composed.skipped})
        elif generation is not None and generation.ok and composed is not None:
            by_task = dict(zip(tasks.values(), experts, strict=True))
            aggregation = synthesis_outcome(composed, generation, by_task, one.prompting.extract, judge)
        elif arrived:
            reason = (generation.error if generation is not None else None) or "aggregator did not run"
            aggregation = majority(arrived, competence=one.competence, judge=judge).model_copy(
                update={"fallback": reason}
            )
    if aggregation is None:
        causes = "; ".join(dict.fromkeys(f"{e.expert}: {e.error}" for e in experts if e.error))
        error = f"no expert answer arrived for question {one.query.id!r} ({causes or 'none asked'})"
    task_ids = (*tasks.values(), *(() if one.vote is not None else (one.aggregate_task,)))
    trace = Trace(
        question_id=one.query.id,
        pool=pool,
        route=one.decision,
        experts=experts,
        aggregator=one.vote or one.aggregator,
        aggregation=aggregation,
        loads=result.metrics.loads,
        escalations=one.escalations,
        voters=one.voters,
        cost=sum(expert_cost(costs.get(e.expert), e) for e in experts),
        conversation=_conversation(one, result),
        cache_hits=sum(1 for t in task_ids if t in result.cached),
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


def _conversation(one: Asked, result: RunResult) -> ConversationTrace | None:
    """A chat turn's conversation record: its length, what each model asked was not shown (the
    aggregator's as its prompt was written), affinity."""
    conversation = one.query.conversation
    if conversation is None:
        return None
    whole = len(conversation.history)
    composed = result.composed.get(one.aggregate_task) if one.vote is None else None
    sent = composed is not None and composed.skipped is None  # the aggregator's request went out
    return ConversationTrace(
        messages=whole + 1,
        cut=cut_counts(one.query, {e: len(one.shown_to(e)) for e in one.expert_tasks}),
        aggregator_cut=whole - (len(composed.request.messages) - 1) if composed is not None and sent else 0,
        affinity=one.affinity,
    )


def _vote(one: Asked, arrived: list[ExpertAnswer]) -> AggregationResult:
    judge = one.prompting.judge
    if one.vote == "weighted" and all(one.competence.get(a.expert) is not None for a in arrived):
        n_options = len(one.query.options) or None
        return weighted(arrived, competence=one.competence, n_options=n_options, judge=judge)
    return majority(arrived, competence=one.competence, judge=judge)


__all__ = [
    "NOT_RUN",
    "Shared",
    "build_answer",
    "build_answers",
    "climbed",
    "expert_answer",
    "expert_cost",
    "heard",
    "play",
]
