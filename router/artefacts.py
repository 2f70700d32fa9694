"""The router's artefacts as one unit: skill classifier + topics, trained together and scored
together.

    arts = train_router(questions, embedder, n_topics=20, seed=0)
    profile = build_profile_from_replay(replay, questions, experts, skills_of=arts.skills_of)
    scorer = arts.scorer()                            # categories + topics, half each
    scorer = RouterArtefacts.of(classifier, topics).scorer()   # from stored payloads

Storing them is the orchestrator's business (``orchestrator.pools.artefacts.PoolArtefacts``); each
object turns itself into plain data with ``to_payload()``.

A profile built with ``skills_of`` counts each question under its category and its topic,
which is what the mixture scorer's weights refer to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from common.errors import BadInput
from eval.benchmarks import Question
from router.classifier import SkillClassifier, train_classifier
from router.scorers import ClassifierScorer, MixtureScorer, Scorer
from router.topics import TopicModel, TopicScorer, train_topics
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

    @classmethod
    def of(
        cls, classifier: SkillClassifier, topics: TopicModel | None = None, embedder: Embedder | None = None
    ) -> RouterArtefacts:
        """Stored artefacts with the embedder they were trained on (made by name when not given)."""
        return cls(classifier, topics, embedder or make_embedder(classifier.meta.embedder))

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
