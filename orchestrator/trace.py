"""What one answer went through: route, expert answers, aggregation, tokens and timings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExpertCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expert: str
    score: float | None = None
    text: str = ""
    choice: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str | None = None


class AggregatorCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    method: str
    prompt: str = ""
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str | None = None


class Trace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question_id: str
    pool: str
    policy: str
    route: dict[str, Any] = Field(default_factory=dict, description="The router's decision, as data.")
    experts: list[ExpertCall] = Field(default_factory=list)
    aggregator: AggregatorCall | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    loads: int = 0

    @property
    def tokens(self) -> tuple[int, int]:
        calls = [*self.experts, *([self.aggregator] if self.aggregator else [])]
        return sum(c.tokens_in for c in calls), sum(c.tokens_out for c in calls)


class Answer(BaseModel):
    """The final answer to one question, with its trace."""

    model_config = ConfigDict(extra="forbid")

    question_id: str
    text: str
    choice: str | None = None
    error: str | None = Field(None, description="Why no answer could be given (every expert failed).")
    trace: Trace

    def summary(self) -> str:
        """A short human-readable account: experts asked, their answers, aggregator, costs."""
        t = self.trace
        lines = [f"Answer: {self.text.strip() or '(empty)'}"]
        if self.choice is not None:
            lines.append(f"Choice: {self.choice}")
        lines.append(f"Route: policy={t.policy} experts={', '.join(c.expert for c in t.experts)}")
        for call in t.experts:
            said = " ".join(call.text.split())
            said = (said[:157] + "...") if len(said) > 160 else said
            state = f"error: {call.error}" if call.error else f"{call.tokens_out} tokens, {call.seconds:.1f}s"
            lines.append(f"  - {call.expert} ({state}): {said or '(no text)'}")
        if t.aggregator is not None:
            a = t.aggregator
            lines.append(f"Aggregator: {a.model} ({a.method}, {a.tokens_out} tokens, {a.seconds:.1f}s)")
        tin, tout = t.tokens
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.stage_seconds.items())
        lines.append(f"Tokens: {tin} in, {tout} out; model loads: {t.loads}; {stages}")
        return "\n".join(lines)
