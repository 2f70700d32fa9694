"""Cascades: ask cheap experts first, escalate a question only when its answers look unsure.

The ladder of one query (``cascade_ladder``) comes from the profile and the pool's costs:

- the *strong* expert is the one with the best expected accuracy on the query's skills (among
  equals the cheapest, unless none has any evidence: then the costliest, the better bet);
- when some experts cost less than it, the first rung is the ``cascade_first`` of those with
  the best expected accuracy per unit of cost, and the one later rung is the strong expert,
  whose answer then *replaces* the earlier ones (small models tend to agree on the same wrong
  answer; a vote would let two of them overrule the large one), unless it gave no readable
  answer (failed, or no letter in it): then the earlier ones stand;
- when none costs less (a pool of equals), the first rung is the ``cascade_first`` most
  accurate experts and each later rung *adds* the next one to the vote, up to ``max_k``.

After each round ``escalation`` reads what came back and decides. Its signals (``FEATURES``):
the vote posterior of the leading answer (experts right with their expected accuracy on the
skills, wrong answers spread over ``n_options - 1`` letters), the leader's share of the answers,
the share of readable answers, the router's skill confidence, the answering experts' and the
next rung's expected accuracy, and the token confidence ``exp(mean log-probability)`` of the
leader's supporters where the engine returned log-probabilities. A ``ConfidenceModel`` turns
them into two probabilities, that the answer now is right and that it will be after the next
rung; the question escalates when the second exceeds the first by more than ``cascade_gain``.
The uncalibrated model reads the vote posterior (nudged by the token confidence) and the next
rung's expected accuracy; ``router.calibration.fit_confidence`` fits both as logistic
regressions on recorded answers, and ``coe calibrate`` stores them with the pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.answers import plurality
from router.decision import RouteDecision

FEATURES = (
    "vote_logit",
    "leader_share",
    "readable_share",
    "skill_confidence",
    "asked_accuracy_logit",
    "next_accuracy_logit",
    "token_confidence_logit",
    "has_token_confidence",
)
_CLIP = 1e-3


def logit(p: float) -> float:
    p = min(1.0 - _CLIP, max(_CLIP, p))
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


Weight = Annotated[float, Field(ge=-1e4, le=1e4)]
"""A fitted coefficient: finite and bounded, so a stored model can never make a NaN."""


class LinearModel(BaseModel):
    """``sigmoid(coef . features + intercept)``: plain numbers, one coefficient per feature."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    coef: list[Weight] = Field(..., min_length=len(FEATURES), max_length=len(FEATURES))
    intercept: Weight = 0.0

    def probability(self, features: Sequence[float]) -> float:
        return sigmoid(sum(c * f for c, f in zip(self.coef, features, strict=True)) + self.intercept)


def _unit(name: str, weight: float = 1.0, **more: float) -> LinearModel:
    weights = {name: weight, **more}
    return LinearModel(coef=[weights.get(f, 0.0) for f in FEATURES])


class ConfidenceModel(BaseModel):
    """How sure the answer is now (``now``) and will be after the next rung (``next``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = FEATURES
    now: LinearModel = _unit("vote_logit", token_confidence_logit=0.5)
    next: LinearModel = _unit("next_accuracy_logit")
    fitted_on: int = Field(0, ge=0, description="Question states it was fitted on (0: the uncalibrated defaults).")

    @model_validator(mode="after")
    def _same_features(self) -> ConfidenceModel:
        if tuple(self.features) != FEATURES:
            raise ValueError(f"features must be {list(FEATURES)} (this version's), got {list(self.features)}")
        return self


class Heard(NamedTuple):
    """One expert's answer as the cascade sees it: ``choice`` is the judge's key of its answer
    (``common.answers.Judge.key``), so answers written differently count as one; None when it
    gave no readable answer."""

    expert: str
    choice: str | None
    logprob: float | None = None


class Escalation(BaseModel):
    """What the cascade decided for one question after one round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round: int = Field(..., ge=1, description="The round just answered (1: the first rung).")
    leader: str | None = Field(..., description="The leading answer so far.")
    confidence: float = Field(..., ge=0.0, le=1.0, description="Estimated chance the leader is right.")
    next_confidence: float | None = Field(
        None, description="Estimated chance after the next rung (None: no rung left)."
    )
    escalate: bool


def leader(heard: Sequence[Heard], competence: Mapping[str, float]) -> str | None:
    """The leading answer: ``common.answers.plurality``, the rule ``aggregators.majority`` counts
    by, so the cascade and the final vote agree."""
    return plurality([h.choice for h in heard], [competence.get(h.expert, 0.0) for h in heard])


def vote_posterior(
    heard: Sequence[Heard], competence: Mapping[str, float], answer: str | None, n_options: int
) -> float:
    """Chance ``answer`` is right given the answers, experts independent and right with their
    competence, wrong ones spread over the other ``n_options - 1`` options."""
    if answer is None:
        return 0.0
    wrong = max(1, n_options - 1)
    logs: dict[str | None, float] = {}
    candidates = {h.choice for h in heard if h.choice is not None}
    for option in candidates | {None}:  # None: any one option nobody chose
        total = 0.0
        for h in heard:
            if h.choice is None:
                continue
            c = min(1.0 - _CLIP, max(_CLIP, competence.get(h.expert, 0.5)))
            total += math.log(c) if h.choice == option else math.log((1.0 - c) / wrong)
        logs[option] = total
    top = max(logs.values())
    unchosen = max(0, n_options - len(candidates))
    z = sum(math.exp(v - top) for o, v in logs.items() if o is not None) + unchosen * math.exp(logs[None] - top)
    return math.exp(logs.get(answer, logs[None]) - top) / z  # an answer nobody gave: as any unchosen one


def features(
    decision: RouteDecision,
    heard: Sequence[Heard],
    competence: Mapping[str, float],
    next_rung: Sequence[str],
    n_options: int,
) -> list[float]:
    """The signals of ``FEATURES`` for one question after some rounds."""
    lead = leader(heard, competence)
    readable = [h for h in heard if h.choice is not None]
    supporters = [h for h in heard if lead is not None and h.choice == lead]
    asked = [competence.get(h.expert, 0.5) for h in heard]
    ahead = [competence.get(e, 0.5) for e in next_rung]
    tokens = [h.logprob for h in supporters if h.logprob is not None]
    token_confidence = math.exp(sum(tokens) / len(tokens)) if tokens else None
    n = max(1, len(heard))
    return [
        logit(vote_posterior(heard, competence, lead, n_options)),
        len(supporters) / n,
        len(readable) / n,
        decision.confidence,
        logit(sum(asked) / len(asked)) if asked else 0.0,
        logit(sum(ahead) / len(ahead)) if ahead else 0.0,
        logit(token_confidence) if token_confidence is not None else 0.0,
        1.0 if token_confidence is not None else 0.0,
    ]


def escalation(
    decision: RouteDecision,
    heard: Sequence[Heard],
    competence: Mapping[str, float],
    model: ConfidenceModel,
    *,
    answered: int,
    gain: float,
    n_options: int,
) -> Escalation:
    """Whether to ask the next rung, after ``answered`` rounds whose answers are ``heard``."""
    next_rung = decision.later[answered - 1].names if answered - 1 < len(decision.later) else ()
    row = features(decision, heard, competence, next_rung, n_options)
    lead = leader(heard, competence)
    now = model.now.probability(row)
    if not next_rung:
        return Escalation(round=answered, leader=lead, confidence=now, escalate=False)
    ahead = model.next.probability(row)
    return Escalation(round=answered, leader=lead, confidence=now, next_confidence=ahead, escalate=ahead - now > gain)
