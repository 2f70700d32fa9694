"""Scorers: one contract, ``skill_weights(texts) -> [{skill: weight}]`` per query.

A scorer only says which skills a query needs; thresholds, fallback and the choice of
experts live in the selection layer (router.policies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from common.errors import BadInput, ConfigError
from common.query import Query
from common.tasks import RunTasks
from router.classifier import SkillClassifier
from router.topics import TOPIC_PREFIX
from skills.annotate import SkillMapper, annotate
from skills.embed import Embedder
from skills.profile import Profile


@runtime_checkable
class Scorer(Protocol):
    """Skill weights (summing to 1, or empty when nothing is known) for each query."""

    name: str

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


def _check(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise BadInput("skill_weights() takes a list of queries, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise BadInput(f"query {i} is empty or not text")
    return texts


def _rows_to_weights(probabilities: np.ndarray, labels: Sequence[str]) -> list[dict[str, float]]:
    out = []
    for row in probabilities:
        total = float(row.sum())
        row = row / total if total > 0 else row
        order = np.argsort(-row, kind="stable")
        out.append({labels[i]: float(row[i]) for i in order if row[i] > 0})
    return out


class ClassifierScorer:
    """Skill probabilities from the embedding classifier."""

    name = "classifier"

    def __init__(self, classifier: SkillClassifier, embedder: Embedder) -> None:
        if embedder.name != classifier.meta.embedder:
            raise ConfigError(
                f"classifier was trained on {classifier.meta.embedder!r} embeddings, got embedder {embedder.name!r}"
            )
        self.classifier = classifier
        self.embedder = embedder

    def weights_from_vectors(self, vectors: np.ndarray) -> list[dict[str, float]]:
        """Skill weights for queries already embedded (by the same embedder)."""
        return _rows_to_weights(self.classifier.predict_proba(vectors), self.classifier.labels)

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        texts = _check(texts)
        if not texts:
            return []
        return self.weights_from_vectors(self.embedder.embed(texts))


KeywordsOf = Callable[[list[str]], list[list[str]]]
"""Keywords for each query (e.g. from the LLM annotator)."""


class KeywordScorer:
    """Skill weights from keywords, each mapped to its nearest known skill."""

    name = "keywords"

    def __init__(self, mapper: SkillMapper, keywords_of: KeywordsOf, *, min_similarity: float = 0.3) -> None:
        self.mapper = mapper
        self.keywords_of = keywords_of
        self.min_similarity = min_similarity

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        texts = _check(texts)
        keywords = self.keywords_of(texts)
        if len(keywords) != len(texts):
            raise BadInput(f"keywords_of returned {len(keywords)} lists for {len(texts)} queries")
        return [self.mapper.weights(k, self.min_similarity) for k in keywords]


def annotator_keywords(
    run: RunTasks,
    annotator: str | Sequence[str],
    *,
    samples: int = 3,
    min_votes: int = 2,
) -> KeywordsOf:
    """A ``keywords_of`` that asks the LLM annotator (through ``run``) about each query."""

    def keywords_of(texts: list[str]) -> list[list[str]]:
        questions = [Query(id=f"query-{i}", text=t) for i, t in enumerate(texts)]
        found = annotate(questions, run, annotator, samples=samples, min_votes=min_votes)
        return [found[q.id] for q in questions]

    return keywords_of


class MixtureScorer:
    """Several scorers' weights added with fixed shares (e.g. categories 0.5 + topics 0.5)."""

    name = "mixture"

    def __init__(self, parts: Sequence[tuple[Scorer, float]]) -> None:
        if not parts:
            raise BadInput("a mixture needs at least one scorer")
        total = sum(share for _, share in parts)
        if any(share < 0 for _, share in parts) or total <= 0:
            raise BadInput("mixture shares must be >= 0 and not all zero")
        self.parts = [(scorer, share / total) for scorer, share in parts]

    @staticmethod
    def _mix(rows: list[tuple[list[dict[str, float]], float]]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in rows[0][0]] if rows else []
        for weights, share in rows:
            for target, row in zip(out, weights):
                for skill, weight in row.items():
                    target[skill] = target.get(skill, 0.0) + share * weight
        return [dict(sorted(row.items(), key=lambda kv: -kv[1])) for row in out]

    def weights_from_vectors(self, vectors: np.ndarray) -> list[dict[str, float]]:
        """For parts that all score from embeddings of the same embedder."""
        return self._mix(
            [(scorer.weights_from_vectors(vectors), share) for scorer, share in self.parts]  # type: ignore
        )

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        texts = _check(texts)
        embedders = {getattr(scorer, "embedder", None) for scorer, _ in self.parts}
        if (
            len(embedders) == 1
            and None not in embedders
            and all(hasattr(scorer, "weights_from_vectors") for scorer, _ in self.parts)
        ):
            # one embedding pass for all parts
            embedder = next(iter(embedders))
            assert embedder is not None
            return self.weights_from_vectors(embedder.embed(texts)) if texts else []
        return self._mix([(scorer.skill_weights(texts), share) for scorer, share in self.parts])


class NoSkillScorer:
    """The scorer of a pool with no trained classifier: it knows no skills.

    Policies then choose from the profile's global prior alone (or, with no profile,
    treat every expert alike); ``all`` needs nothing more.
    """

    name = "none"

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{} for _ in texts]


def keyword_scorer(profile: Profile, run: RunTasks, annotator: str, embedder: Embedder) -> KeywordScorer:
    """Symbolic-MoE's way: keywords from the LLM ``annotator`` (run through ``run``), each mapped
    onto the nearest named skill of the profile."""
    skills = [s for s in profile.skills if not s.startswith(TOPIC_PREFIX)]
    if not skills:
        raise BadInput(
            "the keyword scorer maps keywords onto the skills of the pool's profile, and this "
            "pool's profile has none (build one with 'coe profile')"
        )
    return KeywordScorer(SkillMapper(skills, embedder), annotator_keywords(run, annotator))


def load_scorer(scorer: Scorer) -> None:
    """Load the models ``scorer`` runs on (its embedder's, each part's of a mixture) now rather
    than on its first query. Scorers and embedders with nothing to load are left alone."""
    for part, _ in getattr(scorer, "parts", ()):
        load_scorer(part)
    load = getattr(getattr(scorer, "embedder", None), "load", None)
    if callable(load):
        load()
