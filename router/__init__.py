"""Routing: query -> skill weights (a scorer) -> experts (a named policy) -> ``RouteDecision``.

    from skills import build_profile_from_replay, make_embedder
    from router import Router, ClassifierScorer, train_classifier, save_classifier, load_classifier

    clf = train_classifier([q.text for q in train], [q.category for q in train], embedder)
    save_classifier(clf, pool_dir)                    # pool_dir/router/classifier.v<N>.{json,joblib}
    router = Router(profile, ClassifierScorer(load_classifier(pool_dir), embedder),
                    policy="adaptive", k=3, seed=0)
    decisions = router.route(texts, question_ids)     # list[RouteDecision]

The measured best setup (benchmarks/routing.py) adds topics, finer skills from clustering::

    arts = train_router(train_questions, embedder)    # classifier + 20 topics
    profile = build_profile_from_replay(replay, train_questions, experts, skills_of=arts.skills_of)
    save_router(arts, pool_dir); save_profile(profile, pool_dir)
    router = Router(profile, load_scorer(pool_dir), "adaptive")

Scorers (``skill_weights(texts) -> [{skill: weight}]``): ``ClassifierScorer`` (embeddings +
calibrated logistic regression), ``TopicScorer`` (soft k-means topics of embeddings, finer skills
named ``topic:<i>``), ``KeywordScorer`` (annotator keywords -> nearest skills), and
``MixtureScorer`` adding several with fixed shares.
Policies (``POLICIES``): symbolic, topk, category, single-best, random, all, adaptive; their
thresholds live in ``Selection``. ``Router.route_weights`` routes from known skill weights.
"""

from router.artefacts import RouterArtefacts, load_scorer, save_router, train_router
from router.classifier import (
    ClassifierMeta,
    SkillClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from router.decision import ExpertChoice, RouteDecision
from router.policies import POLICIES, Selection, expected_accuracy, get_policy, symbolic_scores
from router.router import Router
from router.scorers import ClassifierScorer, KeywordScorer, MixtureScorer, Scorer, annotator_keywords
from router.topics import TopicModel, TopicScorer, load_topics, save_topics, train_topics
from router.vote_model import vote_accuracy

__all__ = [
    "POLICIES",
    "ClassifierMeta",
    "ClassifierScorer",
    "ExpertChoice",
    "KeywordScorer",
    "MixtureScorer",
    "RouteDecision",
    "RouterArtefacts",
    "Router",
    "Scorer",
    "Selection",
    "SkillClassifier",
    "TopicModel",
    "TopicScorer",
    "annotator_keywords",
    "expected_accuracy",
    "get_policy",
    "load_classifier",
    "load_scorer",
    "load_topics",
    "save_classifier",
    "save_router",
    "save_topics",
    "symbolic_scores",
    "train_classifier",
    "train_router",
    "train_topics",
    "vote_accuracy",
]
