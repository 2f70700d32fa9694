"""Session affinity: a conversation keeps the experts it was given while its skills stay put.

A conversation's first routed turn is its anchor: its decision (the experts, a cascade's rungs)
and the skill estimate it was made on. A later turn is routed as usual (its skills read in the
context of the earlier turns, ``Router.route``'s ``contexts``); it keeps the anchor's experts
unless its skill estimate has moved from the anchor's by more than the pool's threshold,
``shift`` (the total variation distance of the two estimates: 0 when they are the same, 1 when
they share no skill). A moved turn becomes the new anchor. The anchor is not moved by the turns
that keep it, so a conversation that drifts a little at each turn moves once the drift adds up.

An anchor asked with another policy or ``k``, or naming an expert the pool no longer has, is
moved from, and the record says why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from router.decision import RouteDecision

Outcome = Literal["new", "kept", "moved"]


class Anchor(BaseModel):
    """What a session remembers: the decision its experts were given by, and how it was asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: RouteDecision
    k: int | None = Field(None, description="The k the decision was asked with (None: the policy takes none).")


class Affinity(BaseModel):
    """What session affinity did to one turn: the trace's record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome = Field(..., description="new: no earlier turn was known; kept: its experts; moved: new ones.")
    why: str = Field(..., description="In words: 'kept' or 'moved, because ...'.")
    named_by: Literal["session", "turns"] = Field(
        ..., description="session: a name the caller gave; turns: recognised by its earlier turns."
    )
    shift: float | None = Field(None, ge=0.0, le=1.0, description="How far the skill estimate moved from the anchor's.")
    threshold: float = Field(..., ge=0.0, le=1.0, description="The pool's shift past which experts change.")


def skill_shift(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """The total variation distance of two skill estimates (each normalised): half the summed
    absolute differences, from 0 (the same) to 1 (no skill in common). An empty estimate is
    the same as another empty one and wholly apart from any other."""
    a, b = _normalised(before), _normalised(after)
    if not a and not b:
        return 0.0
    if not a or not b:
        return 1.0
    return min(1.0, 0.5 * sum(abs(a.get(s, 0.0) - b.get(s, 0.0)) for s in a.keys() | b.keys()))


def keep_or_move(
    decision: RouteDecision,
    anchor: Anchor | None,
    *,
    threshold: float,
    k: int | None,
    experts: Collection[str],
    named_by: Literal["session", "turns"],
) -> tuple[RouteDecision, Affinity, Anchor]:
    """This turn's decision under affinity, the record of what was done, and the anchor to keep
    for the next turn. ``decision`` is the router's for this turn; ``experts`` are the pool's."""

    def record(outcome: Outcome, why: str, shift: float | None = None) -> Affinity:
        return Affinity(outcome=outcome, why=why, named_by=named_by, shift=shift, threshold=threshold)

    fresh = Anchor(decision=decision, k=k)
    if anchor is None:
        return decision, record("new", "new: no earlier turn of this conversation is known"), fresh
    before = anchor.decision
    if before.policy != decision.policy or anchor.k != k:
        why = f"moved, because it was asked with policy {decision.policy} (k={k}), not {before.policy} (k={anchor.k})"
        return decision, record("moved", why), fresh
    gone = [c.expert for c in before.all_experts if c.expert not in experts]
    if gone:
        return decision, record("moved", f"moved, because {', '.join(gone)} left the pool"), fresh
    shift = round(skill_shift(before.skills, decision.skills), 6)
    if shift > threshold:
        why = f"moved, because the skills moved by {shift:.2f} (over {threshold:.2f}): {_change(before, decision)}"
        return decision, record("moved", why, shift), fresh
    kept = decision.model_copy(
        update={
            "experts": before.experts,
            "later": before.later,
            "fallback": before.fallback,
            "unmeasured": before.unmeasured,
        }
    )
    why = f"kept: the skills moved by {shift:.2f} (at most {threshold:.2f})"
    return kept, record("kept", why, shift), anchor


def _change(before: RouteDecision, after: RouteDecision) -> str:
    """The named skill (a category, not a topic) that rose most, in words; topics when none is named."""
    from router.skill_rows import category_weights  # numpy: not for the light client, which reads Affinity

    was, now = category_weights(before.skills), category_weights(after.skills)
    if not now:
        return "no skill is known now"
    rose = max(now, key=lambda s: now[s] - was.get(s, 0.0))
    return f"{rose} {was.get(rose, 0.0):.2f} -> {now[rose]:.2f}"


def _normalised(skills: Mapping[str, float]) -> dict[str, float]:
    total = sum(w for w in skills.values() if w > 0)
    return {s: w / total for s, w in skills.items() if w > 0} if total > 0 else {}


__all__ = ["Affinity", "Anchor", "Outcome", "keep_or_move", "skill_shift"]
