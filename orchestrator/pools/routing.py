"""Builds the pool's router and aggregator choice from its stored artefacts (profile, skill
classifier, aggregator selection), and keeps the routers a caller asked for (``PoolRouters``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import get_args

from aggregators import AggregatorChoice
from batching.engines.kinds import engine_kind
from common.errors import BadInput
from common.tasks import RunTasks
from common.vocabulary import ScorerKind
from orchestrator.pools.pool import Pool
from router import Router, get_policy
from router.scorers import NoSkillScorer, Scorer, keyword_scorer
from skills import Profile, ProfileBuilder, make_embedder

log = logging.getLogger(__name__)


def pool_profile(pool: Pool) -> Profile:
    """The pool's latest stored profile over exactly the pool's experts: models the profile knows
    but the pool no longer lists as experts are dropped, experts it lacks join with no evidence
    (they are chosen on the prior alone). With no stored profile, every expert starts so."""
    profile = pool.artefacts.latest_profile()
    if profile is None:
        log.info("pool %s has no profile yet (coe profile builds one); experts are treated alike", pool.name)
        return ProfileBuilder(pool.expert_names, name="empty").build()
    experts = pool.expert_names
    if profile.experts == experts:
        return profile
    missing = sorted(set(experts) - set(profile.experts))
    if missing:
        log.warning("profile of pool %s has no evidence on expert(s) %s", pool.name, ", ".join(missing))
    raw = profile.model_dump()
    return Profile.model_validate(
        {
            **raw,
            "experts": experts,
            "stats": {e: raw["stats"][e] for e in experts if e in raw["stats"]},
            "overall": {e: raw["overall"][e] for e in experts if e in raw["overall"]},
        }
    )


def pool_router(
    pool: Pool,
    policy: str,
    k: int | None,
    seed: int = 0,
    *,
    embeddings_dir: Path | None = None,
    encoders_dir: Path | None = None,
    calibrated: bool = True,
) -> Router:
    """The router for ``pool``: its profile, its experts' costs, the policy's calibrated
    thresholds when ``coe calibrate`` stored some (and ``calibrated``), and, if trained, its
    skill classifier (its embeddings cached in ``embeddings_dir``; None: not cached; an exported
    encoder kept in ``encoders_dir``, the settings' ``encoders_dir``)."""
    get_policy(policy)  # an unknown name is one line, before any artefact is read
    calibration = pool.artefacts.latest_calibration(policy) if calibrated else None
    selection = calibration.apply() if calibration is not None else None
    if calibration is not None:
        log.info("pool %s: %s calibrated (v%d): %s", pool.name, policy, calibration.revision, calibration.selection)
    return Router(
        pool_profile(pool),
        pool_scorer(pool, embeddings_dir, encoders_dir),
        policy,
        k=k,
        seed=seed,
        selection=selection,
        costs=pool.costs,
        confidence=calibration.confidence if calibration is not None else None,
        token_experts=[e for e in pool.expert_names if engine_kind(pool.spec(e)).logprobs],
    )


def pool_scorer(pool: Pool, embeddings_dir: Path | None = None, encoders_dir: Path | None = None) -> Scorer:
    """The pool's latest skill classifier (and topics, if trained) with the embedder they were
    trained on (rebuilt by the name the classifier records), its vectors cached in ``embeddings_dir``;
    a pool without them knows no skills."""
    scorer = pool.artefacts.latest_scorer(embeddings_dir=embeddings_dir, encoders_dir=encoders_dir)
    return scorer if scorer is not None else NoSkillScorer()


def pool_aggregator_choice(pool: Pool) -> AggregatorChoice | None:
    """The pool's latest stored aggregator selection, if one was made."""
    choice = pool.artefacts.latest_choice()
    if choice is None:
        return None
    unknown = sorted({choice.best, *choice.best_per_skill.values()} - set(pool.specs))
    if unknown:
        log.warning(
            "aggregator selection of pool %s names model(s) %s it does not have; using %s instead",
            pool.name,
            unknown,
            pool.aggregator.name,
        )
    return choice


class PoolRouters:
    """The pool's routers, each built once per (policy, k, scorer) and shared by the threads that
    ask (request threads, job workers, the dispatcher). A ``keywords`` scorer has the pool's
    aggregator annotate each question with keywords (``run_tasks`` runs it)."""

    def __init__(self, pool: Pool, run_tasks: RunTasks, embeddings_dir: Path, encoders_dir: Path) -> None:
        self.pool = pool
        self.run_tasks = run_tasks
        self.embeddings_dir = embeddings_dir
        self.encoders_dir = encoders_dir
        self._built: dict[tuple[str, int, str], Router] = {}
        self._lock = threading.RLock()  # reentrant: a keyword router's annotator runs tasks

    def get(self, policy: str, k: int, scorer: ScorerKind = "classifier") -> Router:
        if scorer not in get_args(ScorerKind):
            raise BadInput(f"scorer must be 'classifier' or 'keywords', got {scorer!r}")
        key = (policy, k, scorer)
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build(policy, k, scorer)
            return self._built[key]

    def _build(self, policy: str, k: int, scorer: ScorerKind) -> Router:
        router = pool_router(self.pool, policy, k, embeddings_dir=self.embeddings_dir, encoders_dir=self.encoders_dir)
        if scorer != "keywords":
            return router
        keywords = keyword_scorer(router.profile, self.run_tasks, self.pool.aggregator.name, make_embedder())
        return Router(
            router.profile,
            keywords,
            policy,
            selection=router.selection,
            costs=router.costs,
            confidence=router.confidence,
            token_experts=router.token_experts,
        )
