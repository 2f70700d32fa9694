"""Fitting a policy's thresholds to a cost or accuracy target, on recorded answers.

Every expert's answer to each calibration question is known (``Recorded``), so any policy can
be *played* on them without running a model: ``play`` gives the answer the policy reaches,
the experts it asked and what they cost, by the same rules the pipeline runs (the router's
decision, the cascade's ``Router.escalate`` after each round, the vote of ``cascade.leader``).

``sweep`` plays one knob of a policy (``KNOBS``) over a grid and gives the accuracy-cost
curve; ``choose`` picks the setting a ``Target`` asks for: the most accurate whose cost stays
within ``max_cost`` times the reference expert's, or the cheapest whose accuracy reaches
``min_accuracy`` times the reference's. ``fit_confidence`` fits the cascade's two
probabilities as logistic regressions on the states of every question's whole ladder.
``Calibration`` is what a pool stores (``orchestrator.pools.artefacts``): plain numbers, versioned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import BadInput
from router.cascade import ConfidenceModel, Escalation, Heard, LinearModel, features, leader
from router.decision import RouteDecision
from router.policies import Selection
from router.router import Router

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

Recorded = Mapping[str, Mapping[str, Heard]]
"""Question id -> expert -> its answer (its choice as the judge's key, ``common.answers.Judge.key``)."""

Correct = Callable[[str, str | None], bool]
"""(question id, an answer) -> is it right: the judge's verdict (``common.answers.Judge.correct``),
which the caller binds to each question's gold answer. Routing never compares answers itself."""

_FINE = (0.0005, 0.001, 0.002, 0.003, 0.0035, 0.004, 0.005, 0.006, 0.008, 0.01)
"""Small gains: in a pool of equals one more expert adds little, so the curve turns near 0."""
KNOBS: dict[str, tuple[str, tuple[float, ...]]] = {
    "cascade": ("cascade_gain", tuple(sorted({round(-0.1 + 0.0125 * i, 4) for i in range(49)} | set(_FINE)))),
    "adaptive": (
        "cost",
        (0.0, 0.0025, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01, 0.0125, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2),
    ),
    "top-p": ("top_p", tuple(round(0.05 * i, 2) for i in range(1, 21))),
    "routellm": ("win_threshold", tuple(round(0.025 * i, 3) for i in range(41))),
    "topk": ("k", (1, 2, 3, 4, 5, 6)),
}
"""Policy -> the Selection field calibration sets, and the values tried."""
LADDERS: dict[str, tuple[str, tuple[int, ...]]] = {"cascade": ("cascade_first", (1, 2, 3))}
"""Policy -> a field that shapes the ladder: each value gets its own confidence model and curve."""


class Outcome(NamedTuple):
    choice: str | None
    asked: tuple[str, ...]
    cost: float
    rounds: int
    voters: tuple[str, ...] = ()
    """The experts whose answers voted (every rung asked, or a replacing rung's own)."""
    escalations: tuple[Escalation, ...] = ()
    """The cascade's decision after each round, the last one included (as the pipeline records them)."""


class Point(BaseModel):
    """One setting played on the calibration questions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    fixed: dict[str, float] = Field(default_factory=dict, description="Other Selection fields it was played with.")
    accuracy: float
    cost_ratio: float = Field(..., description="Cost per question over the reference expert's.")
    accuracy_ratio: float = Field(..., description="Accuracy over the reference expert's.")
    experts_per_question: float
    escalated: float = Field(0.0, description="Share of questions that went past the first rung.")


class Target(BaseModel):
    """What the user asks of a calibration: one of a cost cap or an accuracy floor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cost: float | None = Field(None, gt=0.0, description="Cost per question, as a share of the reference's.")
    min_accuracy: float | None = Field(None, gt=0.0, le=1.5, description="Accuracy, as a share of the reference's.")
    reference: str = Field(..., min_length=1, description="The expert both are measured against.")

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.max_cost is None) == (self.min_accuracy is None):
            raise ValueError("give exactly one of max_cost and min_accuracy")
        return self


class Calibration(BaseModel):
    """A policy's fitted thresholds, what they were fitted to, and what they reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    policy: str
    selection: dict[str, float] = Field(..., description="The Selection fields set (the knob).")
    confidence: ConfidenceModel | None = Field(None, description="The cascade's fitted confidence model.")
    target: Target
    reference_accuracy: float
    reference_cost: float
    achieved: Point
    met: bool = Field(True, description="False: no setting reached the target; the nearest was taken.")
    curve: list[Point]
    questions: int = Field(..., ge=1)
    revision: int = Field(0, ge=0, description="The version it is stored as (0 before storing).")

    @model_validator(mode="after")
    def _known(self) -> Calibration:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format {self.format_version} is not known (this version reads {FORMAT_VERSION})")
        fields = set(Selection.model_fields)
        unknown = sorted(set(self.selection) - fields)
        if unknown:
            raise ValueError(f"selection names unknown field(s) {unknown}")
        Selection(**self.selection)  # in range
        return self

    def apply(self, selection: Selection | None = None) -> Selection:
        return (selection or Selection()).model_copy(
            update=Selection(**self.selection).model_dump(include=set(self.selection))
        )


def play(
    router: Router,
    decision: RouteDecision,
    answers: Mapping[str, Heard] | Callable[[str], Heard | None],
) -> Outcome:
    """What ``router``'s policy reaches on one question whose every expert's answer is known.

    ``answers``: expert -> its answer, or a function giving it (None: the expert gave no
    generation, left out of what the cascade hears, as the pipeline's rounds leave it out)."""
    lookup = answers.get if isinstance(answers, Mapping) else answers
    competence = router.competence(decision)
    costs = router.costs

    def hear(names: Sequence[str]) -> list[Heard]:
        return [h for e in names if (h := lookup(e)) is not None]

    heard = hear(decision.expert_names)
    voters, asked = list(heard), list(decision.expert_names)
    voter_names = list(decision.expert_names)
    escalations: list[Escalation] = []
    while True:
        decided = router.escalate(decision, heard, len(escalations) + 1)
        escalations.append(decided)
        if not decided.escalate:  # also when no rung is left
            break
        rung = decision.later[len(escalations) - 1]
        new = hear(rung.names)
        heard += new
        asked += rung.names
        replaced = rung.replaces and any(h.choice is not None for h in new)
        voters = new if replaced else voters + [h for h in new if not rung.replaces]
        voter_names = list(rung.names) if replaced else voter_names + ([] if rung.replaces else list(rung.names))
    return Outcome(
        leader(voters, competence),
        tuple(asked),
        sum(costs.get(e, 1.0) for e in asked),
        len(escalations),
        tuple(voter_names),
        tuple(escalations),
    )


class Scored(NamedTuple):
    accuracy: float
    cost: float
    experts: float
    escalated: float


def score(router: Router, decisions: Sequence[RouteDecision], recorded: Recorded, correct: Correct) -> Scored:
    outcomes = [play(router, d, recorded[str(d.question_id)]) for d in decisions]
    n = max(1, len(outcomes))
    right = sum(correct(str(d.question_id), o.choice) for o, d in zip(outcomes, decisions, strict=True))
    return Scored(
        right / n,
        sum(o.cost for o in outcomes) / n,
        sum(len(o.asked) for o in outcomes) / n,
        sum(o.rounds > 1 for o in outcomes) / n,
    )


def reference_figures(
    reference: str, ids: Sequence[str], recorded: Recorded, correct: Correct, costs: Mapping[str, float]
) -> tuple[float, float]:
    """The reference expert's accuracy alone, and its cost per question."""
    if not ids:
        raise BadInput("no calibration questions")
    right = sum(correct(i, recorded[i][reference].choice) for i in ids)
    return right / len(ids), costs.get(reference, 1.0)


def sweep(
    make_router: Callable[[Selection], Router],
    policy: str,
    weights: Sequence[Mapping[str, float]],
    ids: Sequence[str],
    recorded: Recorded,
    correct: Correct,
    reference: str,
    values: Sequence[float] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> list[Point]:
    """The policy played at each value of its knob (with the ``fixed`` Selection fields): its
    accuracy-cost curve."""
    if policy not in KNOBS:
        raise BadInput(f"policy {policy!r} has no threshold to calibrate; calibrate one of {', '.join(KNOBS)}")
    knob, grid = KNOBS[policy]
    base = make_router(Selection())
    ref_accuracy, ref_cost = reference_figures(reference, ids, recorded, correct, base.costs)
    points = []
    for value in values if values is not None else grid:
        if knob == "k" and value > len(base.profile.experts):
            continue
        update = {name: type(getattr(base.selection, name))(v) for name, v in {**(fixed or {}), knob: value}.items()}
        router = make_router(base.selection.model_copy(update=update))
        decisions = router.route_weights(weights, ids)
        got = score(router, decisions, recorded, correct)
        points.append(
            Point(
                value=float(value),
                fixed=dict(fixed or {}),
                accuracy=round(got.accuracy, 4),
                cost_ratio=round(got.cost / ref_cost, 4),
                accuracy_ratio=round(got.accuracy / ref_accuracy, 4) if ref_accuracy else 0.0,
                experts_per_question=round(got.experts, 3),
                escalated=round(got.escalated, 4),
            )
        )
    return points


def choose(points: Sequence[Point], target: Target) -> Point:
    """The setting ``target`` asks for; BadInput naming the closest one when none reaches it."""
    if not points:
        raise BadInput("nothing to choose from: the sweep played no setting")
    if target.max_cost is not None:
        within = [p for p in points if p.cost_ratio <= target.max_cost + 1e-9]
        if not within:
            cheapest = min(points, key=lambda p: p.cost_ratio)
            raise BadInput(
                f"no setting costs at most {target.max_cost:g} of {target.reference}; "
                f"the cheapest costs {cheapest.cost_ratio:g}"
            )
        return max(within, key=lambda p: (p.accuracy, -p.cost_ratio))
    assert target.min_accuracy is not None
    enough = [p for p in points if p.accuracy_ratio >= target.min_accuracy - 1e-9]
    if not enough:
        best = max(points, key=lambda p: p.accuracy_ratio)
        raise BadInput(
            f"no setting reaches {target.min_accuracy:g} of {target.reference}'s accuracy; "
            f"the best reaches {best.accuracy_ratio:g}"
        )
    return min(enough, key=lambda p: (p.cost_ratio, -p.accuracy))


def nearest(points: Sequence[Point], target: Target) -> Point:
    """The setting closest to ``target`` when none reaches it: the cheapest under a cost cap,
    the most accurate under an accuracy floor."""
    if target.max_cost is not None:
        return min(points, key=lambda p: (p.cost_ratio, -p.accuracy))
    return max(points, key=lambda p: (p.accuracy_ratio, -p.cost_ratio))


def fit_confidence(
    router: Router,
    weights: Sequence[Mapping[str, float]],
    ids: Sequence[str],
    recorded: Recorded,
    correct: Correct,
) -> ConfidenceModel:
    """The cascade's confidence model fitted on every question's whole ladder: ``now`` on whether
    the leading answer after a round is right, ``next`` on whether it is after the next rung."""
    from sklearn.linear_model import LogisticRegression

    rows: list[list[float]] = []
    now: list[bool] = []
    ahead: list[bool] = []
    for decision in router.route_weights(weights, ids, whole_ladder=True):
        qid = str(decision.question_id)
        answers, competence = recorded[qid], router.competence(decision)
        heard = [answers[e] for e in decision.expert_names]
        voters = list(heard)
        for rung in decision.later:
            rows.append(features(decision, heard, competence, rung.names, router.selection.n_options))
            now.append(correct(qid, leader(voters, competence)))
            new = [answers[e] for e in rung.names]
            heard = heard + new
            voters = new if rung.replaces else voters + new
            ahead.append(correct(qid, leader(voters, competence)))
    if len(set(now)) < 2 or len(set(ahead)) < 2:
        raise BadInput(f"cannot fit the cascade's confidence on {len(rows)} state(s): every answer is alike")
    fitted = []
    for target in (now, ahead):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(rows, target)
        fitted.append(LinearModel(coef=[float(c) for c in model.coef_[0]], intercept=float(model.intercept_[0])))
    return ConfidenceModel(now=fitted[0], next=fitted[1], fitted_on=len(rows))


RouterMaker = Callable[[Selection, ConfidenceModel | None], Router]
"""Builds the pool's router for a policy with these settings (and cascade confidence model)."""


def calibrate(
    make_router: RouterMaker,
    policy: str,
    weights: Sequence[Mapping[str, float]],
    ids: Sequence[str],
    recorded: Recorded,
    correct: Correct,
    target: Target,
    *,
    strict: bool = True,
) -> Calibration:
    """Fit ``policy`` to ``target`` on the calibration questions: the cascade's confidence model
    first (when the policy is ``cascade``), then the knob's value from the curve. A target no
    setting reaches is BadInput, or with ``strict=False`` the nearest setting (``met`` false)."""
    ids = [str(i) for i in ids]
    base = make_router(Selection(), None)
    if target.reference not in base.profile.experts:
        raise BadInput(
            f"reference {target.reference!r} is not one of the pool's experts ({', '.join(base.profile.experts)})"
        )
    shapes = LADDERS.get(policy)
    confidences: dict[float, ConfidenceModel | None] = {}
    curve: list[Point] = []
    for shape in shapes[1] if shapes else (0,):
        fixed: dict[str, float] = {shapes[0]: shape} if shapes else {}
        confidence = None
        if policy == "cascade":
            try:
                start = make_router(Selection.model_validate(fixed), None)
                confidence = fit_confidence(start, weights, ids, recorded, correct)
            except BadInput as exc:  # e.g. a ladder with no later rung: nothing to fit, nothing to play
                log.info("calibration: %s skipped (%s)", fixed, exc)
                continue
        confidences[shape] = confidence
        played = _with(make_router, confidence)
        curve += sweep(played, policy, weights, ids, recorded, correct, target.reference, fixed=fixed)
    if not curve:
        raise BadInput(f"nothing to calibrate {policy} on: no ladder had a rung to climb")
    try:
        best, met = choose(curve, target), True
    except BadInput:
        if strict:
            raise
        best, met = nearest(curve, target), False
    ref_accuracy, ref_cost = reference_figures(target.reference, ids, recorded, correct, base.costs)
    knob = KNOBS[policy][0]
    return Calibration(
        policy=policy,
        selection={**best.fixed, knob: best.value},
        confidence=confidences[best.fixed[shapes[0]] if shapes else 0],  # the chosen ladder's
        target=target,
        reference_accuracy=round(ref_accuracy, 4),
        reference_cost=ref_cost,
        achieved=best,
        met=met,
        curve=curve,
        questions=len(ids),
    )


def _with(make_router: RouterMaker, confidence: ConfidenceModel | None) -> Callable[[Selection], Router]:
    return lambda selection: make_router(selection, confidence)
