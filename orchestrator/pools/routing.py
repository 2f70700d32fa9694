"""Builds the pool's router, aggregator choice and skip rule from its stored artefacts (profile,
skill classifier, aggregator selection, fitted skip rule)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from aggregators import AggregatorChoice, SynthesisOptions
from batching.engines.kinds import engine_kind
from common.tasks import RunTasks
from common.vocabulary import ScorerKind
from orchestrator.pools.pool import Pool
from router import Router, get_policy
from router.scorers import NoSkillScorer, Scorer, keyword_scorer
from skills import Profile, ProfileBuilder

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
    scorer: Scorer | None = None,
    profile: Profile | None = None,
) -> Router:
    """The router for ``pool``: its profile, its experts' costs, the policy's calibrated
    thresholds when ``coe calibrate`` stored some (and ``calibrated``), and, if trained, its
    skill classifier (its embeddings cached in ``embeddings_dir``; None: not cached; an exported
    encoder kept in ``encoders_dir``, the settings' ``encoders_dir``). ``scorer``: the pool's scorer
    made before (``pool_scorer``), so that several routers share one encoder; ``profile``: the
    pool's profile read before (``pool_profile``), so that they share its numbers."""
    get_policy(policy)  # an unknown name is one line, before any artefact is read
    calibration = pool.artefacts.latest_calibration(policy) if calibrated else None
    selection = calibration.apply() if calibration is not None else None
    if calibration is not None:
        log.info("pool %s: %s calibrated (v%d): %s", pool.name, policy, calibration.revision, calibration.selection)
    return Router(
        profile if profile is not None else pool_profile(pool),
        scorer if scorer is not None else pool_scorer(pool, embeddings_dir, encoders_dir),
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


def pool_synthesis(pool: Pool, consensus: float | None) -> SynthesisOptions:
    """How the pool's aggregator is asked, and when it is skipped: by the pool's active fitted skip
    rule (``coe calibrate --aggregator-skip``) where it has one, else when ``consensus`` of the
    experts agree (the settings' ``skip_agreement``); None (``aggregator_skip`` off) never skips."""
    fitted = pool.artefacts.latest_skip() if consensus is not None else None
    if fitted is None:
        return SynthesisOptions(order="competence", skip_agreement=consensus)
    return SynthesisOptions(order="competence", skip_agreement=fitted.level, skip_competence=fitted.bar)


class Routers:
    """A pool's routers, each (policy, k, scorer kind) built once and all sharing one scorer (the
    encoder is loaded once) and one profile (read once; routing matrices made per profile are
    shared, ``router.SkillRows``). Safe to share between request threads, job workers and a dispatcher.
    ``run_tasks`` runs the annotator model for the ``keywords`` scorer (Symbolic-MoE's way)."""

    def __init__(
        self,
        pool: Pool,
        run_tasks: RunTasks,
        *,
        embeddings_dir: Path | None = None,
        encoders_dir: Path | None = None,
    ) -> None:
        self._pool = pool
        self._run_tasks = run_tasks
        self._dirs = (embeddings_dir, encoders_dir)
        self._built: dict[tuple[str, int, str], Router] = {}
        self._scorer: Scorer | None = None
        self._profile: Profile | None = None
        self._lock = threading.RLock()  # a keyword router runs tasks while it is built

    def get(self, policy: str, k: int, scorer: ScorerKind) -> Router:
        key = (policy, k, scorer)
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build(policy, k, scorer)
            return self._built[key]

    def _build(self, policy: str, k: int, kind: ScorerKind) -> Router:
        if self._scorer is None:
            self._scorer = pool_scorer(self._pool, *self._dirs)
        if self._profile is None:
            self._profile = pool_profile(self._pool)
        router = pool_router(self._pool, policy, k, scorer=self._scorer, profile=self._profile)
        if kind != "keywords":
            return router
        from skills import make_embedder  # the keyword scorer's own encoder, on first use

        keywords = keyword_scorer(router.profile, self._run_tasks, self._pool.aggregator.name, make_embedder())
        return Router(
            router.profile,
            keywords,
            policy,
            selection=router.selection,
            costs=router.costs,
            confidence=router.confidence,
            token_experts=router.token_experts,
        )
