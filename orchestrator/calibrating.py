"""``coe calibrate``: fit a policy's thresholds on the profiling split to a target, and store them.

Every expert answers every calibration question once through the SDK (policy ``all``, votes,
the generation cache on: a second calibration reads the first one's answers), with token
log-probabilities where the engine gives them; the policy is then played on those answers by
``router.calibration`` (no model runs again): for a cascade, its confidence model is fitted
first, then the knob is swept and the setting that meets the target is chosen. The result is
stored as the next version of ``policies/<policy>.v<N>.json`` in the pool, which the pool's
router reads from then on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from common.answers import Judge
from common.errors import BadInput, config_error
from eval.benchmarks import Benchmark, Question
from orchestrator.asked import prompting
from orchestrator.items import check_questions
from orchestrator.routing import pool_router
from orchestrator.sdk import Orchestrator
from router import ConfidenceModel, Heard, Router, Selection
from router.calibration import KNOBS, Calibration, Correct, Recorded, Target, calibrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationReport:
    calibration: Calibration
    path: Path
    active: bool
    """Whether the pool now routes with it."""
    questions: int
    """Calibration questions every expert answered (the others are left out)."""
    left_out: int


def judges(questions: list[Question], benchmark: Benchmark | None) -> dict[str, Judge]:
    """Each question's judge, as the pipeline judges its answers."""
    return {q.id: prompting(q, benchmark).judge for q in questions}


def verdicts(questions: list[Question], benchmark: Benchmark | None) -> Correct:
    """(question id, answer) -> is it right, by each question's judge and gold answer."""
    judged = judges(questions, benchmark)
    gold = {q.id: q.answer for q in questions}
    return lambda qid, answer: judged[qid].correct(answer, gold[qid])


def recorded_answers(coe: Orchestrator, questions: list[Question], benchmark: Benchmark | None) -> Recorded:
    """Every expert's answer to each question (its judge's key and mean token log-probability),
    through the pipeline; a question some expert failed on is left out."""
    experts = set(coe.pool.expert_names)
    judged = judges(questions, benchmark)
    out: dict[str, dict[str, Heard]] = {}
    asked = coe.answer_batch(questions, benchmark=benchmark, policy="all", aggregation="majority", logprobs=True)
    for answer in asked:
        calls = answer.trace.experts
        if {c.expert for c in calls} == experts and all(c.error is None for c in calls):
            judge = judged[answer.question_id]
            out[answer.question_id] = {c.expert: Heard(c.expert, judge.key(c.choice), c.logprob) for c in calls}
    return out


def calibrate_pool(
    coe: Orchestrator,
    questions: list[Question],
    benchmark: Benchmark | None,
    policy: str,
    *,
    max_cost: float | None = None,
    min_accuracy: float | None = None,
    reference: str | None = None,
    activate: bool = False,
) -> CalibrationReport:
    """Calibrate ``policy`` on ``questions`` to ``max_cost`` or ``min_accuracy`` (shares of the
    ``reference`` expert's cost or accuracy; default reference: the costliest expert when the
    pool declares costs, else the most accurate one on these questions) and store it as the
    policy's next version; the pool routes with it only when ``activate``."""
    if policy not in KNOBS:
        raise BadInput(f"policy {policy!r} has nothing to calibrate; calibrate one of {', '.join(KNOBS)}")
    if (max_cost is None) == (min_accuracy is None):
        raise BadInput("give exactly one target: --max-cost or --min-accuracy")
    if reference is not None and reference not in coe.pool.expert_names:
        raise BadInput(
            f"--reference {reference!r} is not one of the pool's experts ({', '.join(coe.pool.expert_names)})"
        )
    if not questions:
        raise BadInput("no calibration questions")
    check_questions(coe.pool, questions)
    try:  # checked before any expert runs
        Target(max_cost=max_cost, min_accuracy=min_accuracy, reference=reference or coe.pool.expert_names[0])
    except ValidationError as exc:
        raise config_error(exc, "calibration target") from exc
    recorded = recorded_answers(coe, questions, benchmark)
    kept = [q for q in questions if q.id in recorded]
    if not kept:
        raise BadInput(f"no question of {len(questions)} was answered by every expert; nothing to calibrate on")
    correct = verdicts(kept, benchmark)
    base = pool_router(
        coe.pool,
        policy,
        None,
        embeddings_dir=coe.settings.embeddings_dir,
        encoders_dir=coe.settings.encoders_dir,
        calibrated=False,
    )
    weights = base.scorer.skill_weights([q.text for q in kept])
    ids = [q.id for q in kept]
    if reference is None:
        costs = coe.pool.costs
        if coe.pool.cost_unit != "calls":
            reference = max(costs, key=lambda e: (costs[e], e))
        else:
            reference = max(costs, key=lambda e: (sum(correct(i, recorded[i][e].choice) for i in ids), e))
    target = Target(max_cost=max_cost, min_accuracy=min_accuracy, reference=reference)

    def make(selection: Selection, confidence: ConfidenceModel | None) -> Router:
        return Router(base.profile, base.scorer, policy, selection=selection, costs=base.costs, confidence=confidence)

    calibration = calibrate(make, policy, weights, ids, recorded, correct, target)
    path = coe.pool.artefacts.add_calibration(calibration, activate=activate)
    return CalibrationReport(calibration, path, activate, len(kept), len(questions) - len(kept))
