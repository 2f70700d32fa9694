"""Routing: query -> skill weights (a scorer) -> experts (a named policy) -> ``RouteDecision``.

    from skills import build_profile_from_replay, make_embedder
    from router import Router, ClassifierScorer, train_classifier

    clf = train_classifier([q.text for q in train], [q.category for q in train], embedder)
    router = Router(profile, ClassifierScorer(clf, embedder), policy="adaptive", k=3, seed=0)
    decisions = router.route(texts, question_ids)     # list[RouteDecision]

The measured best setup (benchmarks/routing.py) adds topics, finer skills from clustering::

    arts = train_router(train_questions, embedder)    # classifier + 20 topics
    profile = build_profile_from_replay(replay, train_questions, experts, skills_of=arts.skills_of)
    router = Router(profile, arts.scorer(), "adaptive")

Trained objects are plain numbers, never pickles: ``SkillClassifier.to_payload()`` and
``TopicModel.to_payload()`` give pydantic records of lists, ``from_payload()`` rebuilds them.
A pool stores them through ``orchestrator.pools.artefacts.PoolArtefacts``.

Scorers (``skill_weights(texts) -> [{skill: weight}]``): ``ClassifierScorer`` (embeddings +
calibrated logistic regression), ``TopicScorer`` (soft k-means topics of embeddings, finer skills
named ``topic:<i>``), ``KeywordScorer`` (annotator keywords -> nearest skills), and
``MixtureScorer`` adding several with fixed shares.
Policies (``POLICIES``): symbolic, topk, category, single-best, random, all, adaptive, and the
cost-aware top-p, routellm and cascade (``router.cascade``: rounds, escalation on low confidence); their
thresholds live in ``Selection``; they read the profile through a memoised ``ProfileLookup``.
``Router.route_weights`` routes from known skill weights, or from ``SkillRows`` (weights
normalised once, with the expected-accuracy and score matrices of the batch) shared by routers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from router.affinity import Affinity, Anchor, keep_or_move, skill_shift
    from router.artefacts import TOPIC_SHARE, RouterArtefacts, train_router
    from router.cascade import ConfidenceModel, Escalation, Heard, LinearModel
    from router.classifier import ClassifierMeta, ClassifierPayload, LinearMember, SkillClassifier, train_classifier
    from router.decision import ExpertChoice, RouteDecision, Rung
    from router.lookup import ProfileLookup
    from router.policies import POLICIES, Selection, expected_accuracy, get_policy, symbolic_scores
    from router.router import CONTEXT_WEIGHT, Router, in_context
    from router.scorers import (
        ClassifierScorer,
        KeywordScorer,
        MixtureScorer,
        NoSkillScorer,
        Scorer,
        annotator_keywords,
        keyword_scorer,
        load_scorer,
    )
    from router.skill_rows import SkillRows
    from router.topics import TopicMeta, TopicModel, TopicPayload, TopicScorer, train_topics
    from router.vote_model import vote_accuracies, vote_accuracy

__getattr__, __dir__ = lazy(
    __name__,
    {
        "Affinity": "router.affinity",
        "Anchor": "router.affinity",
        "keep_or_move": "router.affinity",
        "skill_shift": "router.affinity",
        "TOPIC_SHARE": "router.artefacts",
        "RouterArtefacts": "router.artefacts",
        "train_router": "router.artefacts",
        "ConfidenceModel": "router.cascade",
        "Escalation": "router.cascade",
        "Heard": "router.cascade",
        "LinearModel": "router.cascade",
        "ClassifierMeta": "router.classifier",
        "ClassifierPayload": "router.classifier",
        "LinearMember": "router.classifier",
        "SkillClassifier": "router.classifier",
        "train_classifier": "router.classifier",
        "ExpertChoice": "router.decision",
        "RouteDecision": "router.decision",
        "Rung": "router.decision",
        "ProfileLookup": "router.lookup",
        "POLICIES": "router.policies",
        "Selection": "router.policies",
        "expected_accuracy": "router.policies",
        "get_policy": "router.policies",
        "symbolic_scores": "router.policies",
        "CONTEXT_WEIGHT": "router.router",
        "Router": "router.router",
        "in_context": "router.router",
        "ClassifierScorer": "router.scorers",
        "KeywordScorer": "router.scorers",
        "MixtureScorer": "router.scorers",
        "NoSkillScorer": "router.scorers",
        "Scorer": "router.scorers",
        "annotator_keywords": "router.scorers",
        "keyword_scorer": "router.scorers",
        "load_scorer": "router.scorers",
        "SkillRows": "router.skill_rows",
        "TopicMeta": "router.topics",
        "TopicModel": "router.topics",
        "TopicPayload": "router.topics",
        "TopicScorer": "router.topics",
        "train_topics": "router.topics",
        "vote_accuracies": "router.vote_model",
        "vote_accuracy": "router.vote_model",
    },
)

__all__ = [
    "CONTEXT_WEIGHT",
    "Affinity",
    "Anchor",
    "in_context",
    "keep_or_move",
    "skill_shift",
    "Rung",
    "LinearModel",
    "Heard",
    "Escalation",
    "ConfidenceModel",
    "POLICIES",
    "TOPIC_SHARE",
    "ClassifierMeta",
    "ClassifierPayload",
    "ClassifierScorer",
    "ExpertChoice",
    "KeywordScorer",
    "NoSkillScorer",
    "LinearMember",
    "MixtureScorer",
    "ProfileLookup",
    "RouteDecision",
    "RouterArtefacts",
    "Router",
    "Scorer",
    "Selection",
    "SkillClassifier",
    "SkillRows",
    "TopicMeta",
    "TopicModel",
    "TopicPayload",
    "TopicScorer",
    "annotator_keywords",
    "keyword_scorer",
    "expected_accuracy",
    "get_policy",
    "load_scorer",
    "symbolic_scores",
    "train_classifier",
    "train_router",
    "train_topics",
    "vote_accuracies",
    "vote_accuracy",
]
