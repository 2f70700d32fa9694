"""The router: a scorer says which skills a query needs, a policy picks the experts."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

from common.errors import BadInput
from router.cascade import ConfidenceModel, Escalation, Heard, escalation
from router.decision import RouteDecision
from router.lookup import ProfileLookup
from router.policies import Asking, Selection, get_policy
from router.scorers import Scorer
from router.skill_rows import SkillRows, normalised
from skills.profile import Profile

log = logging.getLogger(__name__)


class Router:
    """``Router(profile, scorer, policy="adaptive", k=3, seed=0).route(texts) -> [RouteDecision]``.

    ``selection`` holds every threshold of the selection layer; ``k`` (if given) overrides
    its ``k``. Random policies draw from a generator seeded by ``seed`` and the question id
    (or position), so a decision does not depend on what else is in the batch.
    """

    def __init__(
        self,
        profile: Profile,
        scorer: Scorer,
        policy: str = "adaptive",
        *,
        k: int | None = None,
        seed: int = 0,
        selection: Selection | None = None,
        costs: Mapping[str, float] | None = None,
        confidence: ConfidenceModel | None = None,
        token_experts: Collection[str] | None = None,
    ) -> None:
        selection = selection or Selection()
        if k is not None:
            selection = selection.model_copy(update={"k": Selection(k=k).k})
        self.profile = profile
        self._lookup = ProfileLookup(profile, costs)
        self.token_experts = set(profile.experts if token_experts is None else token_experts)
        """Experts whose engines can return token log-probabilities (recordings cannot)."""
        self.confidence = confidence or ConfidenceModel()
        """A cascade's confidence model (``coe calibrate`` fits one; else the uncalibrated defaults)."""
        self.scorer = scorer
        self.policy_name = policy
        self.policy = get_policy(policy)
        self.selection = selection
        self.seed = seed

    def route(
        self,
        texts: Sequence[str],
        question_ids: Sequence[str] | None = None,
        *,
        contexts: Sequence[Sequence[str]] | None = None,
        context_weight: float | None = None,
    ) -> list[RouteDecision]:
        """One decision per query text, in order. ``contexts``: per query, the questions it
        follows (a conversation's earlier ones, oldest first; empty for none): its skills are
        ``in_context`` of its own and theirs, each earlier question counting ``context_weight``
        (default ``CONTEXT_WEIGHT``) as much as the one after it."""
        if isinstance(texts, str):
            raise BadInput("route() takes a list of queries, not one string")
        texts = list(texts)
        if contexts is None or not any(contexts):
            return self.route_weights(self.scorer.skill_weights(texts), question_ids)
        if len(contexts) != len(texts):
            raise BadInput(f"{len(contexts)} contexts for {len(texts)} queries")
        earlier = [text for context in contexts for text in context]
        scored = self.scorer.skill_weights([*texts, *earlier])
        weights, rest = scored[: len(texts)], iter(scored[len(texts) :])
        for i, context in enumerate(contexts):
            weights[i] = in_context(weights[i], [next(rest) for _ in context], context_weight)
        return self.route_weights(weights, question_ids)

    def route_weights(
        self,
        weights: Sequence[Mapping[str, float]] | SkillRows,
        question_ids: Sequence[str] | None = None,
        *,
        whole_ladder: bool = False,
    ) -> list[RouteDecision]:
        """Decisions for queries whose skill weights are already known (e.g. dataset labels), or
        already normalised into ``SkillRows`` (which several routers of a pool may share).
        ``whole_ladder``: a cascade keeps every rung, even one it would skip (for calibration)."""
        if question_ids is not None and len(question_ids) != len(weights):
            raise BadInput(f"{len(question_ids)} question ids for {len(weights)} queries")
        rows = weights if isinstance(weights, SkillRows) else SkillRows(weights)
        decisions = []
        for index, skills in enumerate(rows.rows):
            qid = None if question_ids is None else str(question_ids[index])
            seed = f"{self.seed}:{qid if qid is not None else index}"
            chosen = self.policy(self._lookup, Asking(rows, index, self._lookup, seed), self.selection)
            every = [*chosen.experts, *(c for rung in chosen.later for c in rung.experts)]
            decision = RouteDecision(
                question_id=qid,
                skills=skills,
                experts=tuple(chosen.experts),
                confidence=rows.confidences[index],
                policy=self.policy_name,
                fallback=chosen.fallback,
                unmeasured=tuple(c.expert for c in every if not self._lookup.measured(c.expert)),
                later=chosen.later,
            )
            decisions.append(decision if whole_ladder else self._skip_hopeless(decision))
        log.debug("router: %d decisions by %s", len(decisions), self.policy_name)
        return decisions

    def _skip_hopeless(self, decision: RouteDecision) -> RouteDecision:
        """A cascade whose first rung would be climbed past even if its experts all agreed (and,
        those that can give them, with full token confidence) starts at the next rung: asking
        them could not stop the climb, only add their cost."""
        while decision.later:
            agreed = [Heard(e, "A") for e in decision.expert_names]
            sure = [Heard(e, "A", 0.0 if e in self.token_experts else None) for e in decision.expert_names]
            if not all(self.escalate(decision, heard, 1).escalate for heard in (agreed, sure)):
                break
            rung, rest = decision.later[0], decision.later[1:]
            experts = rung.experts if rung.replaces else (*decision.experts, *rung.experts)
            decision = decision.model_copy(update={"experts": experts, "later": rest})
        return decision

    @property
    def costs(self) -> dict[str, float]:
        """Expert -> the cost of one call, as routing weighs it."""
        return dict(self._lookup.costs)

    def competence(self, decision: RouteDecision) -> dict[str, float]:
        """Every expert's expected accuracy on the decision's skills."""
        return self.competences([decision])[0]

    def competences(self, decisions: Sequence[RouteDecision] | SkillRows) -> list[dict[str, float]]:
        """``competence`` of each decision, made for them all at once; or of each row of the
        ``SkillRows`` the decisions were routed from (the same skills)."""
        rows = (
            decisions if isinstance(decisions, SkillRows) else SkillRows([d.skills for d in decisions], normalise=False)
        )
        return rows.expected(self._lookup)

    def escalate(self, decision: RouteDecision, heard: Sequence[Heard], answered: int) -> Escalation:
        """For a cascade: after ``answered`` rounds whose answers are ``heard``, ask the next rung?"""
        return escalation(
            decision,
            heard,
            self.competence(decision),
            self.confidence,
            answered=answered,
            gain=self.selection.cascade_gain,
            n_options=self.selection.n_options,
        )


CONTEXT_WEIGHT = 0.5
"""How much the questions before a conversation's turn count in its skills: the turn before it
this share, the one before that this share of the rest, and so on (benchmarks/conversations.py)."""


def in_context(
    own: Mapping[str, float], earlier: Sequence[Mapping[str, float]], weight: float | None = None
) -> dict[str, float]:
    """The skills of a question read in the context of the questions before it (``earlier``, oldest
    first, each its skill weights): an exponential smoothing, each question mixed with the reading
    of those before it, ``weight`` (default ``CONTEXT_WEIGHT``) of the earlier reading. A question
    or context without skills leaves the other as it is."""
    weight = CONTEXT_WEIGHT if weight is None else weight
    if not 0.0 <= weight < 1.0:
        raise BadInput(f"context weight must be from 0 to below 1, got {weight}")
    reading: dict[str, float] = {}
    for skills in [*earlier, own]:
        now = normalised(skills)
        if not reading or not now:
            reading = now or reading
            continue
        keys = now.keys() | reading.keys()
        reading = normalised({s: (1 - weight) * now.get(s, 0.0) + weight * reading.get(s, 0.0) for s in keys})
    return reading
