"""The router's artefacts as one unit: skill classifier + topics, trained, saved and loaded together.

    arts = train_router(questions, embedder, n_topics=20, seed=0)
    profile = build_profile_from_replay(replay, questions, experts, skills_of=arts.skills_of)
    save_router(arts, pool_dir)                       # pool_dir/router/{classifier,topics}.v<N>.*
    scorer = load_scorer(pool_dir)                    # categories + topics, half each

A profile built with ``skills_of`` counts each question under its category and its topic,
which is what the mixture scorer's weights refer to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import BadInput
from eval.benchmarks import Question
from router.classifier import ROUTER_DIR, SkillClassifier, load_classifier, save_classifier, train_classifier
from router.scorers import ClassifierScorer, MixtureScorer, Scorer
from router.topics import TopicModel, TopicScorer, load_topics, save_topics, train_topics
from skills.embed import Embedder, make_embedder
from skills.names import question_skills

TOPIC_SHARE = 0.5


@dataclass
class RouterArtefacts:
    classifier: SkillClassifier
    topics: TopicModel | None
    embedder: Embedder
    skills_of: dict[str, list[str]] = field(default_factory=dict)
    """Training question id -> its skills (category, and topic when there are topics)."""

    def scorer(self, topic_share: float = TOPIC_SHARE) -> Scorer:
        categories = ClassifierScorer(self.classifier, self.embedder)
        if self.topics is None or topic_share == 0:
            return categories
        topics = TopicScorer(self.topics, self.embedder)
        return MixtureScorer([(categories, 1 - topic_share), (topics, topic_share)])


def train_router(
    questions: Sequence[Question],
    embedder: Embedder,
    *,
    vectors: np.ndarray | None = None,
    n_topics: int | None = 20,
    seed: int = 0,
) -> RouterArtefacts:
    """Classifier on the questions' dataset labels, and ``n_topics`` topics (None: no topics)."""
    labelled = [q for q in questions if question_skills(q)]
    if len(labelled) != len(questions):
        raise BadInput(f"{len(questions) - len(labelled)} question(s) have no category to train on")
    if vectors is None:
        vectors = embedder.embed([q.text for q in questions])
    labels = [q.category or "" for q in questions]
    classifier = train_classifier(None, labels, embedder, vectors=vectors, seed=seed)
    topics = train_topics(vectors, embedder, n_topics, seed=seed) if n_topics else None
    topic_of = topics.labels(vectors) if topics is not None else [None] * len(questions)
    skills_of = {q.id: [*question_skills(q), *([t] if t else [])] for q, t in zip(questions, topic_of)}
    return RouterArtefacts(classifier, topics, embedder, skills_of)


def save_router(artefacts: RouterArtefacts, pool_dir: Path) -> list[Path]:
    paths = [save_classifier(artefacts.classifier, pool_dir)]
    if artefacts.topics is not None:
        paths.append(save_topics(artefacts.topics, pool_dir))
    return paths


def load_scorer(pool_dir: Path, embedder: Embedder | None = None, topic_share: float = TOPIC_SHARE) -> Scorer:
    """The pool's latest classifier (and topics, if saved) as one scorer."""
    classifier = load_classifier(pool_dir)
    embedder = embedder or make_embedder(classifier.meta.embedder)
    folder = Path(pool_dir) / ROUTER_DIR
    topics = load_topics(pool_dir) if any(folder.glob("topics.v*.json")) else None
    return RouterArtefacts(classifier, topics, embedder).scorer(topic_share)
