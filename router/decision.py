"""What a routing decision records; it goes into the answer's trace."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ExpertChoice(BaseModel):
    """One chosen expert and the score the policy gave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str
    score: float


class Rung(BaseModel):
    """Experts a cascade asks only when the answers before them look unsure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts: tuple[ExpertChoice, ...] = Field(..., min_length=1)
    replaces: bool = Field(
        False, description="True: their answer replaces the earlier ones; False: they join the vote."
    )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(choice.expert for choice in self.experts)


class RouteDecision(BaseModel):
    """Skills seen in a query, the experts chosen for it, how sure the router was, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: str | None = None
    skills: dict[str, float] = Field(..., description="Skill -> weight (sums to 1 when any).")
    experts: tuple[ExpertChoice, ...] = Field(
        ..., min_length=1, description="Best first; a cascade's first rung (asked up front)."
    )
    confidence: float = Field(
        ..., ge=0.0, le=1.0, description="Weight of the top named skill (topics left aside), renormalised."
    )
    policy: str
    fallback: bool = Field(False, description="True when low confidence sent the query to a general expert.")
    unmeasured: tuple[str, ...] = Field(
        (), description="Chosen experts the profile has no evidence on (ranked below every measured one)."
    )

    later: tuple[Rung, ...] = Field((), description="Cascade rungs after ``experts``, asked only on escalation.")

    @property
    def expert_names(self) -> list[str]:
        return [choice.expert for choice in self.experts]

    @property
    def all_experts(self) -> tuple[ExpertChoice, ...]:
        """The first rung's experts, then each later rung's (a cascade's whole ladder)."""
        return (*self.experts, *(choice for rung in self.later for choice in rung.experts))

    @property
    def top_skill(self) -> str | None:
        return max(self.skills, key=self.skills.__getitem__) if self.skills else None
