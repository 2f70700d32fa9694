"""One query as the pipeline asks it (``Asked``), decided once: its route, its prompt and how its
answers are read and judged (``Prompting``), its aggregator and experts' competence, and what
its requests ask. The task graph, the rounds and the answers are built from these records."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from common.answers import AnswerKind, Judge
from common.errors import BadInput
from common.query import Query
from common.requests import Message
from common.vocabulary import Vote
from eval.benchmarks import LETTER_FORMAT, Benchmark, Question, choice_prompt, with_options
from eval.extract import Extractor, final_line_extractor, letter_extractor
from orchestrator.pipeline.inputs import FREE_FORMAT
from orchestrator.pipeline.items import ItemRef
from orchestrator.pipeline.task_ids import aggregate_task_id, expert_task_id
from router import Affinity, Anchor, Escalation, RouteDecision, Router


@dataclass(frozen=True)
class Prompting:
    """How one query is asked, how its answers are read, and how they are judged."""

    prompt: str
    answer_format: str
    extract: Extractor
    shown_question: str
    judge: Judge = Judge()
    """Compares the query's answers (votes, agreement, the cascade) and, for benchmark items, scores them."""


def prompting(query: Query, benchmark: Benchmark | None) -> Prompting:
    if benchmark is not None:
        if not isinstance(query, Question):
            raise BadInput(f"query {query.id!r}: a benchmark prompt needs a benchmark item (eval.Question)")
        return Prompting(
            benchmark.prompt(query),
            benchmark.answer_format,
            lambda text: benchmark.extract(query, text),
            with_options(query),
            benchmark.judge(query),
        )
    if query.options:
        return Prompting(
            choice_prompt(query),
            LETTER_FORMAT,
            letter_extractor(len(query.options)),
            with_options(query),
            Judge(AnswerKind.LETTER, tuple(query.options)),
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
    """Each expert's expected accuracy on the query's skills, by weight (``router.expected_accuracy``;
    experts the profile knows; a cascade's whole ladder)."""
    voters: tuple[str, ...] | None = None
    """The experts whose answers the vote and the aggregator read (None: every one asked; a
    cascade that escalated to a strong expert: that expert alone)."""
    escalations: tuple[Escalation, ...] = ()
    """A cascade's decisions after each round."""
    vote: Vote | None = None
    """None: the aggregator model writes the answer; else the experts' vote is it."""
    sample: int = 0
    """Which draw of the query this is (an evaluation's ``--samples``; 0 otherwise)."""
    method: str | None = None
    """The evaluation method it belongs to, when several decide the same query."""
    router: Router | None = None
    """The router that decided it (a cascade climbs by its escalation)."""
    item: ItemRef | None = None
    """The benchmark item its requests ask (``orchestrator.pipeline.items``), decided by ``ask``."""
    history: dict[str, tuple[Message, ...]] = field(default_factory=dict)
    """A chat turn: expert -> the conversation's earlier turns it is shown, cut to its context
    (``orchestrator.pipeline.conversation.shown``); empty for a plain question."""
    aggregator_context: tuple[int | None, int] = (None, 0)
    """A chat turn: the aggregator's context and what its call needs besides its prompt and the
    earlier turns (``aggregators.SynthesisJob.context``)."""
    affinity: Affinity | None = None
    """A chat turn: whether it kept its conversation's experts, and why."""
    anchor: Anchor | None = None
    """A chat turn: the session state to keep once it is answered."""

    @property
    def asks(self) -> ItemRef:
        """``item``, else the query's own id with no benchmark."""
        return self.item if self.item is not None else ItemRef(self.query.id)

    def shown_to(self, expert: str) -> tuple[Message, ...]:
        """The earlier turns ``expert`` is shown (none for a plain question)."""
        return self.history.get(expert, ())

    @cached_property
    def expert_tasks(self) -> dict[str, str]:
        """Chosen expert -> the id of its task (made once per record; not to be changed)."""
        return {name: expert_task_id(self.query.id, name, self.sample) for name in self.decision.expert_names}

    @property
    def aggregate_task(self) -> str:
        return aggregate_task_id(self.query.id, self.sample, self.method)


__all__ = ["Asked", "Prompting", "prompting"]
