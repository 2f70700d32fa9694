"""The task graph of a batch of decided queries (``pipeline.Asked``): one expert task per
(question, sample, expert), shared by every record that asks it, and one aggregation task per
record the aggregator model answers, waiting on its experts.

A cascade is asked in one of two ways. Its rounds (``orchestrator.pipeline.rounds``) ask each rung only
when the one below escalates: the SDK, the service and jobs do that. Asked *whole*, every rung
is in the one graph and the cascade is played on the generations afterwards
(``answering.play``), reaching the same decisions: an evaluation does that, so that every
method reads the same generations; its aggregation task waits on the whole ladder and is
composed from the voters alone (``voters_only``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aggregators import SynthesisJob
from common.requests import Generation, Message, Request
from common.tasks import Compose, Composed, Task
from orchestrator.pipeline.answering import play
from orchestrator.pipeline.asked import Asked
from orchestrator.pipeline.items import ItemRef
from orchestrator.pipeline.task_ids import expert_task_id


def expert_task(
    question_id: str,
    expert: str,
    prompt: str,
    *,
    sample: int = 0,
    logprobs: bool = False,
    temperature: float | None = None,
    item: ItemRef | None = None,
    history: tuple[Message, ...] = (),
    said: dict[tuple[tuple[Message, ...], str], tuple[Message, ...]] | None = None,
) -> Task:
    """One expert answering one question. A later sample draws with its own seed (sample 0
    keeps the expert's own sampling). Its request names the benchmark item it asks (``item``;
    default: the question's own id, no benchmark); a chat turn's earlier turns (``history``)
    come before the prompt. ``said``: the messages already made for a (history, prompt), which
    the tasks of a batch that ask the same share (their request keys then encode them once)."""
    task_id = expert_task_id(question_id, expert, sample)
    item = item if item is not None else ItemRef(question_id)
    messages = said.get((history, prompt)) if said is not None else None
    if messages is None:
        messages = (*history, Message(role="user", content=prompt))
        if said is not None:
            said[history, prompt] = messages
    request = Request(
        id=task_id,
        messages=messages,
        question_id=item.question_id,
        benchmark=item.benchmark,
        seed=sample or None,
        temperature=temperature,
        logprobs=logprobs,
    )
    return Task(id=task_id, model=expert, request=request)


def ladder(one: Asked) -> list[str]:
    """Every expert a decision may ask: its first rung, then each later rung's (a cascade's ladder)."""
    names = dict.fromkeys(one.decision.expert_names)
    for rung in one.decision.later:
        names.update(dict.fromkeys(rung.names))
    return list(names)


@dataclass(frozen=True)
class Graph:
    tasks: list[Task]
    jobs: dict[str, SynthesisJob]
    """Aggregation task id -> what composing its request needs."""
    ladders: dict[str, Asked] = field(default_factory=dict)
    """Aggregation task id -> the cascade (asked whole) whose voters alone it reads."""


def task_graph(
    asked: Sequence[Asked],
    *,
    whole_ladders: bool = False,
    logprobs: bool = False,
    temperature: float | None = None,
) -> Graph:
    """The tasks of ``asked``; with ``whole_ladders`` a cascade's every rung, else its first.
    ``logprobs``: the expert requests ask for their tokens' log-probabilities (also whenever a
    cascade is asked whole: its escalation reads them)."""
    logprobs = logprobs or (whole_ladders and any(one.decision.later for one in asked))
    tasks: dict[str, Task] = {}
    jobs: dict[str, SynthesisJob] = {}
    ladders: dict[str, Asked] = {}
    said: dict[tuple[tuple[Message, ...], str], tuple[Message, ...]] = {}
    for one in asked:
        qid = one.query.id
        experts = ladder(one) if whole_ladders else one.decision.expert_names
        after = []
        for name in experts:
            task_id = expert_task_id(qid, name, one.sample)
            if task_id not in tasks:  # the first record asking it makes it; later ones share it
                tasks[task_id] = expert_task(
                    qid,
                    name,
                    one.prompting.prompt,
                    sample=one.sample,
                    logprobs=logprobs,
                    temperature=temperature,
                    item=one.asks,
                    history=one.shown_to(name),
                    said=said,
                )
            after.append(task_id)
        if one.vote is not None:
            continue
        aggregate = one.aggregate_task
        tasks[aggregate] = Task(id=aggregate, model=one.aggregator, after=tuple(after))
        jobs[aggregate] = synthesis_job(one)
        if whole_ladders and one.decision.later:
            ladders[aggregate] = one
    return Graph(list(tasks.values()), jobs, ladders)


def synthesis_job(one: Asked) -> SynthesisJob:
    return SynthesisJob(
        question_text=one.prompting.shown_question,
        answer_format=one.prompting.answer_format,
        competence=one.competence,
        question_id=one.asks.question_id,
        benchmark=one.asks.benchmark,
        extract=one.prompting.extract,
        judge=one.prompting.judge,
        history=one.query.conversation.history if one.query.conversation is not None else (),
        context=one.aggregator_context,
    )


def voters_only(compose: Compose, ladders: Mapping[str, Asked]) -> Compose:
    """``compose`` whose cascade aggregation tasks (``ladders``, by aggregation task id) read only
    the voters their cascade reaches on the generations they wait on; other tasks unchanged."""
    if not ladders:
        return compose

    def composed(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        one = ladders.get(task.id)
        if one is None:
            return compose(task, inputs)
        keep = tuple(expert_task_id(one.query.id, e, one.sample) for e in play(one, inputs).voters)
        return compose(task.model_copy(update={"after": keep}), {t: inputs[t] for t in keep if t in inputs})

    return composed


def limited(composer: Compose, max_tokens: int | None) -> Compose:
    """``composer`` with its requests' new tokens capped at ``max_tokens`` (unchanged when None)."""
    if max_tokens is None:
        return composer

    def composed(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        made = composer(task, inputs)
        request = made.request.model_copy(update={"max_tokens": max_tokens})
        return made.model_copy(update={"request": request})

    return composed


__all__ = ["Graph", "expert_task", "ladder", "limited", "synthesis_job", "task_graph", "voters_only"]
