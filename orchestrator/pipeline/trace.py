"""What one answer went through: the route, the expert answers, the aggregation, tokens, times.

The trace is made of the same records the packages produce (``RouteDecision``,
``aggregators.ExpertAnswer``, ``aggregators.AggregationResult``): one family of answer types
serves aggregation and the trace.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregators import AggregationResult, ExpertAnswer
from common.errors import CoeError, GenerationFailed, ReplayMiss
from router import Affinity, Escalation, RouteDecision

Outcome = Literal["called", "skipped", "vote", "none"]


class Timings(BaseModel):
    """Seconds per stage of one answer. Batch stages are shared by every question of the batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: float = Field(0.0, description="This question's share of routing the batch.")
    load: float = Field(0.0, description="Loading models for the whole batch, summed over models loaded side by side.")
    experts: float = Field(0.0, description="The slowest of this question's expert generations.")
    aggregate: float = Field(0.0, description="This question's aggregation.")
    run: float = Field(0.0, description="The batch run, loads and generations included.")


class ConversationTrace(BaseModel):
    """What a chat turn's conversation did: its length, what each model was not shown, and
    session affinity's decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: int = Field(
        ..., ge=1, description="Messages of the conversation, the question and any system one included."
    )
    cut: dict[str, int] = Field(
        default_factory=dict,
        description="Expert -> how many of the oldest earlier messages it was not shown, to fit its context "
        "(experts shown them all are left out).",
    )
    aggregator_cut: int = Field(
        0, ge=0, description="How many of the oldest earlier messages the aggregator was not shown (0: none)."
    )
    affinity: Affinity | None = Field(None, description="Whether the conversation kept its experts, and why.")


class SemanticNote(BaseModel):
    """What the semantic cache did for one answer (``orchestrator.pipeline.semantic``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Literal["hit", "miss", "refused"] = Field(
        ..., description="hit: an earlier answer was reused; miss: none was close enough; refused: the request said no."
    )
    similarity: float | None = Field(None, description="A hit's cosine similarity to the question it reused.")
    threshold: float = Field(..., description="The least similarity a hit needs.")


class Trace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: str
    pool: str
    route: RouteDecision
    experts: tuple[ExpertAnswer, ...] = Field(..., description="One per chosen expert, in route order.")
    aggregator: str = Field(..., description="The model chosen to aggregate this question.")
    aggregation: AggregationResult | None = Field(None, description="None when no expert answered.")
    timings: Timings = Field(default_factory=Timings)
    loads: int = Field(0, description="Model loads of the batch run.")
    cache_hits: int = Field(0, description="This answer's generations (experts, aggregation) taken from the cache.")
    escalations: tuple[Escalation, ...] = Field((), description="A cascade's decision after each round.")
    voters: tuple[str, ...] | None = Field(
        None, description="A cascade: the experts whose answers were combined (None: every one asked)."
    )
    cost: float = Field(
        0.0, ge=0.0, description="What the experts' calls cost, in the pool's unit (calls when it declares none)."
    )
    conversation: ConversationTrace | None = Field(
        None, description="A chat turn's conversation; None: a plain question."
    )
    trace_id: str | None = Field(
        None,
        pattern="^[0-9a-f]{32}$",
        description="The OpenTelemetry trace this answer was made in (its request's, in the service); None "
        "while nothing traces.",
    )
    semantic_cache: SemanticNote | None = Field(None, description="The semantic cache's part, where it is on.")

    @property
    def policy(self) -> str:
        return self.route.policy

    @property
    def outcome(self) -> Outcome:
        """How the experts' answers became one: the aggregator ``called``, ``skipped`` (the
        experts agreed), a ``vote``, or ``none`` (no expert answered)."""
        a = self.aggregation
        if a is None:
            return "none"
        return "skipped" if a.skipped else "called" if a.method.startswith("synthesis") else "vote"

    @property
    def reused(self) -> bool:
        """Whether this answer is an earlier one the semantic cache reused (it cost nothing now)."""
        return self.semantic_cache is not None and self.semantic_cache.outcome == "hit"

    @property
    def tokens(self) -> tuple[int, int]:
        """Tokens read and written by the experts and the aggregator."""
        spent = [(e.tokens_in, e.tokens_out) for e in self.experts]
        if self.aggregation is not None:
            spent.append((self.aggregation.tokens_in, self.aggregation.tokens_out))
        return sum(i for i, _ in spent), sum(o for _, o in spent)


class Answer(BaseModel):
    """The final answer to one question, with its trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: str
    text: str
    choice: str | None = None
    error: str | None = Field(None, description="Why no answer could be given (every expert failed).")
    trace: Trace

    def traced(self, trace_id: str | None) -> Answer:
        """This answer, as given in the trace ``trace_id`` (None: in none)."""
        if trace_id == self.trace.trace_id:
            return self
        return self.model_copy(update={"trace": self.trace.model_copy(update={"trace_id": trace_id})})

    def failure(self) -> CoeError:
        """The error an answer that could not be given raises: ``ReplayMiss`` when every expert
        asked failed for want of a recorded answer, else ``GenerationFailed``."""
        message = self.error or f"no answer to question {self.question_id!r}"
        kinds = {e.error_type for e in self.trace.experts if e.error != "not run"}
        if self.trace.experts and kinds == {ReplayMiss.__name__}:
            asked = ", ".join(e.expert for e in self.trace.experts if e.error != "not run")
            return ReplayMiss(
                f"no recorded answer to question {self.question_id!r} from its experts ({asked}): replay experts "
                "answer only the items of their recordings' benchmark, asked by id or by the item's text"
            )
        return GenerationFailed(message)

    def summary(self) -> str:
        """A short human-readable account: experts asked, their answers, aggregator, costs."""
        t = self.trace
        lines = [f"Answer: {self.text.strip() or '(empty)'}"]
        if self.error:
            lines.append(f"Error: {self.error}")
        if self.choice is not None:
            lines.append(f"Choice: {self.choice}")
        lines.append(f"Route: policy={t.policy} experts={', '.join(e.expert for e in t.experts)}")
        for expert in t.experts:
            said = " ".join(expert.text.split())
            said = (said[:157] + "...") if len(said) > 160 else said
            state = f"error: {expert.error}" if expert.error else f"{expert.tokens_out} tokens, {expert.seconds:.1f}s"
            lines.append(f"  - {expert.expert} ({state}): {said or '(no text)'}")
        if t.aggregation is not None:
            a = t.aggregation
            how = f"{a.method}, fallback: {a.fallback}" if a.fallback else a.method
            lines.append(f"Aggregator: {t.aggregator} ({how}, {a.tokens_out} tokens, {a.seconds:.1f}s)")
        tin, tout = t.tokens
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.timings.model_dump().items())
        cached = f"; from the cache: {t.cache_hits}" if t.cache_hits else ""
        lines.append(f"Tokens: {tin} in, {tout} out; model loads: {t.loads}{cached}; {stages}")
        return "\n".join(lines)
