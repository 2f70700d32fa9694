"""LLM synthesis: the aggregator model reads the experts' answers and writes the final one.

The prompt holds the question and the experts' answers, anonymised as "Answer 1..k", each
stripped of ``<think>`` blocks and cut to a bound from the front (the end, where the answer
is, is kept); the order is seeded-random, by competence, or as given. It ends with the
benchmark's answer-format instruction, which the caller supplies.

``synthesis_request`` builds one request; ``compose`` makes the executor's ``Compose``
callback for aggregation tasks whose inputs are the experts' generations.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregators.result import (
    AggregationResult,
    Competence,
    ExpertAnswer,
    Extract,
    agreement,
    resolve_competence,
)
from common.tasks import Task
from common.requests import Generation, Request
from common.errors import BadInput, GenerationFailed
from common.text import strip_thinking

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""Rough characters per token, used when the bound is given in tokens."""

CUT_MARK = "[...] "

INSTRUCTIONS = (
    "Several assistants were each given the question below and wrote an answer. Their answers "
    "may disagree, and any of them may be wrong, even when most agree. Check each line of "
    "reasoning against the question, decide which final answer is correct, and give it yourself."
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
        None, ge=1, le=32768, description="Most tokens the aggregator writes; None keeps its own setting."
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


def order_answers(
    answers: Sequence[ExpertAnswer], order: str, *, seed: int = 0, key: str = ""
) -> list[ExpertAnswer]:
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
    question_text: str, answers: Sequence[ExpertAnswer], answer_format: str, options: SynthesisOptions
) -> str:
    """The aggregator's prompt for answers already in display order."""
    parts = [INSTRUCTIONS, f"Question:\n{question_text.strip()}"]
    for number, answer in enumerate(answers, 1):
        parts.append(f"Answer {number}:\n{bound_text(answer.text, options.answer_chars)}")
    parts.append(
        "Now write your own short reasoning, then the final answer. " + answer_format.strip()
    )
    return "\n\n".join(parts)


def synthesis_request(
    task_id: str,
    question_text: str,
    answers: list[ExpertAnswer],
    answer_format: str,
    options: SynthesisOptions | None = None,
    *,
    question_id: str | None = None,
) -> Request:
    """The request that asks the aggregator to synthesise ``answers`` into one."""
    options = options or SynthesisOptions()
    if not question_text.strip():
        raise BadInput(f"aggregation {task_id!r}: question_text is empty")
    if not answer_format.strip():
        raise BadInput(f"aggregation {task_id!r}: answer_format is empty")
    usable = [a for a in answers if strip_thinking(a.text)]
    if not usable:
        raise BadInput(f"aggregation {task_id!r}: no expert answer with any text to synthesise")
    shown = order_answers(usable, options.order, seed=options.seed, key=task_id)
    prompt = synthesis_prompt(question_text, shown, answer_format, options)
    return Request.user(task_id, prompt, question_id=question_id, max_tokens=options.max_tokens)


def synthesis_result(
    generation: Generation,
    answers: Sequence[ExpertAnswer],
    extract: Extract,
    *,
    left_out: Sequence[str] = (),
) -> AggregationResult:
    """The aggregator's generation as a result; confidence is the share of experts it agrees with."""
    if generation.error is not None:
        raise GenerationFailed(f"aggregator {generation.model!r} failed on {generation.request_id!r}: "
                               f"{generation.error}")
    choice = extract(generation.text)
    agreed, share = agreement(answers, choice)
    return AggregationResult(
        method=f"synthesis:{generation.model}",
        text=generation.text,
        choice=choice,
        agreed_with=agreed,
        inputs=tuple(a.expert for a in answers),
        left_out=tuple(left_out),
        confidence=share,
        tokens_in=generation.tokens_in,
        tokens_out=generation.tokens_out,
        seconds=generation.seconds,
    )


@dataclass(frozen=True)
class SynthesisJob:
    """What the composer needs to know about one aggregation task's question."""

    question_text: str
    answer_format: str
    extract: Extract | None = None
    competence: Competence | None = None
    question_id: str | None = None


class SynthesisComposer:
    """The executor's ``Compose`` callback for aggregation tasks (see ``compose``).

    Called with an aggregation task and the generations of the tasks in its ``after``, it
    leaves out failed, missing and empty inputs (noted in ``left_out`` and the log), and
    builds the synthesis request from the rest. With no input left it raises GenerationFailed.
    ``used``/``left_out``/``requests`` keep, per task id, what went into each prompt (for
    ``result`` and the trace).
    """

    def __init__(self, jobs: Mapping[str, SynthesisJob], options: SynthesisOptions | None = None) -> None:
        self.jobs = dict(jobs)
        self.options = options or SynthesisOptions()
        self.used: dict[str, list[ExpertAnswer]] = {}
        self.left_out: dict[str, list[str]] = {}
        self.requests: dict[str, Request] = {}
        self._lock = threading.Lock()

    def __call__(self, task: Task, inputs: Mapping[str, Generation]) -> Request:
        job = self.jobs.get(task.id)
        if job is None:
            raise BadInput(f"no synthesis job for aggregation task {task.id!r}")
        answers: list[ExpertAnswer] = []
        notes: list[str] = []
        for input_id in task.after:
            generation = inputs.get(input_id)
            if generation is None:
                notes.append(f"{input_id}: no generation arrived")
            elif generation.error is not None:
                notes.append(f"{generation.model}: {generation.error}")
            elif not strip_thinking(generation.text):
                notes.append(f"{generation.model}: empty answer")
            else:
                answers.append(ExpertAnswer.from_generation(generation, job.extract))
        answers = resolve_competence(answers, job.competence)
        with self._lock:
            self.used[task.id] = answers
            self.left_out[task.id] = notes
        if notes:
            log.info("aggregation %s: left out %d input(s): %s", task.id, len(notes), "; ".join(notes))
        if not answers:
            raise GenerationFailed(
                f"aggregation {task.id!r}: none of its {len(task.after)} expert answers arrived "
                f"({'; '.join(notes)})"
            )
        request = synthesis_request(
            task.id, job.question_text, answers, job.answer_format, self.options, question_id=job.question_id
        )
        with self._lock:
            self.requests[task.id] = request
        return request

    def result(
        self, task_id: str, generation: Generation, extract: Extract | None = None
    ) -> AggregationResult:
        """The aggregation result of a task this composer composed."""
        if task_id not in self.used:
            raise BadInput(f"aggregation task {task_id!r} was never composed")
        extract = extract or self.jobs[task_id].extract
        if extract is None:
            raise BadInput(f"aggregation task {task_id!r}: no extract function to read its answer")
        return synthesis_result(generation, self.used[task_id], extract, left_out=self.left_out[task_id])


def compose(jobs: Mapping[str, SynthesisJob], options: SynthesisOptions | None = None) -> SynthesisComposer:
    """A ``Compose`` callback for the aggregation tasks named in ``jobs`` (keyed by task id)."""
    return SynthesisComposer(jobs, options)
