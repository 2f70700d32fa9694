"""LLM synthesis: the aggregator model reads the experts' answers and writes the final one.

The prompt holds the question and the experts' answers, anonymised as "Answer 1..k", each
stripped of ``<think>`` blocks and cut to a bound from the front (the end, where the answer
is, is kept); the order is seeded-random, by competence, or as given. It ends with the
benchmark's answer-format instruction, which the caller supplies. When the question is the last
turn of a conversation, the earlier turns come before the prompt as messages of their own (the
aggregator reads them in its chat template) and the instructions say so.

``synthesis_request`` builds one request; ``compose`` makes the executor's (pure) ``Compose``
function for aggregation tasks whose inputs are the experts' generations.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregators.result import (
    AggregationResult,
    ExpertAnswer,
    Extract,
    agreement,
)
from aggregators.skip import agreement_of, skips
from common.answers import Judge
from common.conversation import PER_MESSAGE, estimate_tokens, fit
from common.errors import BadInput, GenerationFailed
from common.requests import Generation, Message, Request
from common.tasks import Compose, Composed, Task
from common.text import strip_thinking
from common.vocabulary import MAX_NEW_TOKENS

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""Rough characters per token, used when the bound is given in tokens."""

CUT_MARK = "[...] "

INSTRUCTIONS = (
    "Several assistants were each given the question below and wrote an answer. Their answers "
    "may disagree, and any of them may be wrong, even when most agree. Check each line of "
    "reasoning against the question, decide which final answer is correct, and give it yourself."
)

IN_CONVERSATION = (
    "The question below is the last message of the conversation above. Several assistants were each "
    "given that conversation and wrote an answer to it. Their answers may disagree, and any of them may "
    "be wrong, even when most agree. Check each line of reasoning against the conversation, decide which "
    "final answer is correct, and give it yourself."
)


class SynthesisOptions(BaseModel):
    """How the aggregator's prompt is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: Literal["random", "competence", "given"] = Field(
        "random",
        description="Order of the answers: seeded shuffle per task, most competent first, or as given.",
    )
    seed: int = Field(0, description="Seed of the 'random' order (mixed with the task id).")
    answer_limit: int = Field(300, ge=8, le=1_000_000, description="Longest answer kept, in limit_unit.")
    limit_unit: Literal["chars", "tokens"] = Field(
        "tokens", description="Unit of answer_limit; tokens are approximated as 4 characters."
    )
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_NEW_TOKENS, description="Most tokens the aggregator writes; None keeps its own setting."
    )
    skip_agreement: float | None = Field(
        1.0,
        gt=0.5,
        le=1.0,
        description="Skip the aggregator when at least this share of the answers agree (by the judge), at "
        "least two of them: 1 = unanimous; None never skips. A blank answer agrees with nothing.",
    )
    skip_competence: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With skip_agreement: skip only when the agreeing experts' mean competence is at least this "
        "(an agreement of experts without a known competence never does); None: agreement alone decides.",
    )

    @property
    def answer_chars(self) -> int:
        return self.answer_limit * (CHARS_PER_TOKEN if self.limit_unit == "tokens" else 1)


def bound_text(text: str, max_chars: int) -> str:
    """The text without ``<think>`` blocks, cut to its last ``max_chars`` characters if longer."""
    text = strip_thinking(text)
    if len(text) <= max_chars:
        return text
    tail = text[len(text) - max_chars + len(CUT_MARK) :]
    return CUT_MARK + tail.lstrip()


def order_answers(answers: Sequence[ExpertAnswer], order: str, *, seed: int = 0, key: str = "") -> list[ExpertAnswer]:
    """The answers in the order the prompt shows them (``key`` varies the seeded shuffle)."""
    answers = list(answers)
    if order == "given":
        return answers
    if order == "competence":
        # most competent first; unknown competence last; otherwise as given (sort is stable)
        return sorted(answers, key=lambda a: -a.competence if a.competence is not None else 1.0)
    if order == "random":
        random.Random(f"{seed}\x00{key}").shuffle(answers)
        return answers
    raise BadInput(f"order must be 'random', 'competence' or 'given', got {order!r}")


def synthesis_prompt(
    question_text: str,
    answers: Sequence[ExpertAnswer],
    answer_format: str,
    options: SynthesisOptions,
    *,
    in_conversation: bool = False,
) -> str:
    """The aggregator's prompt for answers already in display order (``in_conversation``: the
    question is the last turn of the messages before it)."""
    parts = [IN_CONVERSATION if in_conversation else INSTRUCTIONS, f"Question:\n{question_text.strip()}"]
    for number, answer in enumerate(answers, 1):
        parts.append(f"Answer {number}:\n{bound_text(answer.text, options.answer_chars)}")
    parts.append("Now write your own short reasoning, then the final answer. " + answer_format.strip())
    return "\n\n".join(parts)


def synthesis_request(
    task_id: str,
    question_text: str,
    answers: list[ExpertAnswer],
    answer_format: str,
    options: SynthesisOptions | None = None,
    *,
    question_id: str | None = None,
    benchmark: str | None = None,
    history: Sequence[Message] = (),
    context: tuple[int | None, int] = (None, 0),
) -> Request:
    """The request that asks the aggregator to synthesise ``answers`` into one (``question_id``
    and ``benchmark``: the item it answers, for an aggregator that answers from recordings;
    ``history``: the conversation's earlier turns, sent before the prompt, as many of the newest
    as fit ``context``: the aggregator's context in tokens (None: no limit) and the tokens its
    call needs besides the prompt and the turns (its instructions, its answer))."""
    options = options or SynthesisOptions()
    if not question_text.strip():
        raise BadInput(f"aggregation {task_id!r}: question_text is empty")
    if not answer_format.strip():
        raise BadInput(f"aggregation {task_id!r}: answer_format is empty")
    usable = [a for a in answers if strip_thinking(a.text)]
    if not usable:
        raise BadInput(f"aggregation {task_id!r}: no expert answer with any text to synthesise")
    shown = order_answers(usable, options.order, seed=options.seed, key=task_id)
    prompt = synthesis_prompt(question_text, shown, answer_format, options, in_conversation=bool(history))
    if history:
        fixed = estimate_tokens(prompt) + PER_MESSAGE + context[1]
        history = fit(history, fixed, context[0])[0]
    messages = (*history, Message(role="user", content=prompt))
    return Request(
        id=task_id, messages=messages, question_id=question_id, benchmark=benchmark, max_tokens=options.max_tokens
    )


def synthesis_result(
    generation: Generation,
    answers: Sequence[ExpertAnswer],
    extract: Extract,
    *,
    prompt: str = "",
    left_out: Sequence[str] = (),
    judge: Judge | None = None,
) -> AggregationResult:
    """The aggregator's generation as a result; confidence is the share of ``answers`` it agrees
    with by ``judge``."""
    if generation.error is not None:
        raise GenerationFailed(
            f"aggregator {generation.model!r} failed on {generation.request_id!r}: {generation.error}"
        )
    choice = extract(generation.text)
    agreed, share = agreement(answers, choice, judge)
    return AggregationResult(
        method=f"synthesis:{generation.model}",
        text=generation.text,
        choice=choice,
        agreed_with=agreed,
        inputs=tuple(a.expert for a in answers),
        left_out=tuple(left_out),
        confidence=share,
        prompt=prompt,
        tokens_in=generation.tokens_in,
        tokens_out=generation.tokens_out,
        seconds=generation.seconds,
    )


def synthesis_outcome(
    composed: Composed,
    generation: Generation,
    answers: Mapping[str, ExpertAnswer],
    extract: Extract,
    judge: Judge | None = None,
) -> AggregationResult:
    """The result of one aggregation from the record of what went into it (``composed``), the
    aggregator's generation and the expert answers by input task id."""
    used = [answers[task_id] for task_id in composed.used]
    left_out = [
        f"{answers[task_id].expert if task_id in answers else task_id}: {why}" for task_id, why in composed.left_out
    ]
    return synthesis_result(generation, used, extract, prompt=composed.request.text, left_out=left_out, judge=judge)


@dataclass(frozen=True)
class SynthesisJob:
    """What composing one aggregation task needs to know about its question."""

    question_text: str
    answer_format: str
    competence: Mapping[str, float] = field(default_factory=dict)
    """Each expert's accuracy on the question's skill (experts without evidence left out)."""
    question_id: str | None = None
    benchmark: str | None = None
    """The benchmark whose item ``question_id`` names (``Request.benchmark``)."""
    extract: Extract | None = None
    """Reads an answer out of an expert's text (the consensus check)."""
    judge: Judge | None = None
    """Compares the answers (the consensus check); None: the text judge."""
    history: tuple[Message, ...] = ()
    """The conversation's earlier turns, oldest first: the aggregator is shown the newest that fit."""
    context: tuple[int | None, int] = (None, 0)
    """The aggregator's context in tokens (None: no limit) and what its call needs besides the
    prompt and the earlier turns (its instructions and the answer it writes)."""


def consensus(
    answers: Sequence[ExpertAnswer],
    ids: Sequence[str],
    agreement: float | None,
    judge: Judge | None,
    competence: float | None = None,
) -> tuple[str, str] | None:
    """(why, the input id whose answer stands) when the answers agree enough to skip the
    aggregator (``aggregators.skip``): at least two answers, ``agreement`` of them (of every usable
    answer) the same by ``judge``, and with a ``competence`` bar, their experts' mean competence
    at least that; the most competent supporter's answer stands. None otherwise."""
    found = agreement_of(answers, judge) if agreement is not None else None
    if found is None or not skips(found, agreement, competence):
        return None
    stands = max(found.supporters, key=lambda i: c if (c := answers[i].competence) is not None else -1.0)
    how = "unanimous" if len(found.supporters) == len(answers) else f"{found.share:.0%} agree"
    if competence is not None:
        how += f", competence {found.competence:.2f}"
    return f"{how}: {len(found.supporters)} of {len(answers)} experts answered {found.choice}", ids[stands]


def compose(jobs: Mapping[str, SynthesisJob], options: SynthesisOptions | None = None) -> Compose:
    """The executor's ``Compose`` for the aggregation tasks named in ``jobs`` (keyed by task id).

    A pure function: it leaves out failed, missing and empty inputs (named in ``left_out``)
    and writes the synthesis request from the rest; with no input left it raises
    GenerationFailed. The ``Composed`` record it returns is what went into the aggregation.
    """
    options = options or SynthesisOptions()

    def composed(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        job = jobs.get(task.id)
        if job is None:
            raise BadInput(f"no synthesis job for aggregation task {task.id!r}")
        answers: list[ExpertAnswer] = []
        used: list[str] = []
        left_out: list[tuple[str, str]] = []
        for input_id in task.after:
            generation = inputs.get(input_id)
            if generation is None:
                left_out.append((input_id, "no generation arrived"))
            elif generation.error is not None:
                left_out.append((input_id, generation.error))
            elif not strip_thinking(generation.text):
                left_out.append((input_id, "empty answer"))
            else:
                used.append(input_id)
                answers.append(
                    ExpertAnswer(
                        expert=generation.model,
                        text=generation.text,
                        choice=generation.stated(job.extract),
                        competence=job.competence.get(generation.model),
                    )
                )
        if left_out:
            log.info("aggregation %s: left out %s", task.id, "; ".join(f"{i}: {why}" for i, why in left_out))
        if not answers:
            raise GenerationFailed(
                f"aggregation {task.id!r}: none of its {len(task.after)} expert answers arrived "
                f"({'; '.join(f'{i}: {why}' for i, why in left_out)})"
            )
        request = synthesis_request(
            task.id,
            job.question_text,
            answers,
            job.answer_format,
            options,
            question_id=job.question_id,
            benchmark=job.benchmark,
            history=job.history,
            context=job.context,
        )
        agreed = (
            consensus(answers, used, options.skip_agreement, job.judge, options.skip_competence)
            if job.extract is not None
            else None
        )
        skipped, stands = agreed if agreed is not None else (None, None)
        return Composed(request=request, used=tuple(used), left_out=tuple(left_out), skipped=skipped, stands=stands)

    return composed
