"""Topics: finer skills than a dataset's categories, found by clustering question embeddings.

``train_topics`` runs k-means on the embeddings of training questions; each cluster is a
skill named ``topic:<i>``, so a profile counts every expert's answers per topic like per
category (``topic_labels`` gives training questions their topic). ``TopicScorer`` turns a
query's similarity to the cluster centres into soft topic weights. ``TopicModel.to_payload()``
gives it as plain JSON-able data (the centres as lists of numbers), ``from_payload()`` rebuilds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import BadInput, ConfigError
from router._numbers import float32_rows
from skills.embed import Embedder

log = logging.getLogger(__name__)

TOPIC_PREFIX = "topic:"


class TopicMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: str = Field(..., min_length=1)
    n_topics: int = Field(..., ge=2)
    temperature: float = Field(0.05, gt=0.0, le=10.0, description="Softmax temperature over cosine similarity.")
    n_train: int = Field(..., ge=1)


class TopicPayload(BaseModel):
    """Topics as plain data: what they were made from and their centres, one row per topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = Field(2, ge=2, le=2, description="2: centres stored here (1 kept them in a .npy).")
    meta: TopicMeta
    centres: list[list[float]] = Field(..., min_length=2)

    @model_validator(mode="after")
    def _shape(self) -> TopicPayload:
        width = len(self.centres[0])
        if width == 0 or any(len(row) != width for row in self.centres):
            raise ValueError("centres rows must all have the same, non-zero length")
        if len(self.centres) != self.meta.n_topics:
            raise ValueError(f"{len(self.centres)} centres for n_topics = {self.meta.n_topics}")
        return self


class TopicModel:
    """Unit-length cluster centres and how sharply a query is assigned to them."""

    def __init__(self, centres: np.ndarray, meta: TopicMeta) -> None:
        if centres.ndim != 2 or centres.shape[0] != meta.n_topics:
            raise ConfigError(f"topic centres have shape {centres.shape}, expected {meta.n_topics} rows")
        norms = np.linalg.norm(centres, axis=1, keepdims=True)
        self.centres = (centres / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        self.meta = meta

    @property
    def names(self) -> list[str]:
        return [f"{TOPIC_PREFIX}{i}" for i in range(self.meta.n_topics)]

    def labels(self, vectors: np.ndarray) -> list[str]:
        """The nearest topic of each row."""
        return [f"{TOPIC_PREFIX}{i}" for i in np.argmax(vectors @ self.centres.T, axis=1)]

    def to_payload(self) -> TopicPayload:
        return TopicPayload(meta=self.meta, centres=float32_rows(self.centres))

    @classmethod
    def from_payload(cls, payload: TopicPayload) -> TopicModel:
        return cls(np.asarray(payload.centres, dtype=np.float32), payload.meta)

    def weights(self, vectors: np.ndarray) -> np.ndarray:
        """Soft topic weights per row (softmax of similarity / temperature)."""
        logits = (vectors @ self.centres.T) / self.meta.temperature
        logits -= logits.max(axis=1, keepdims=True)
        out = np.exp(logits)
        return out / out.sum(axis=1, keepdims=True)


def train_topics(
    vectors: np.ndarray, embedder: Embedder, n_topics: int = 20, *, seed: int = 0, temperature: float = 0.05
) -> TopicModel:
    """Cluster training embeddings into ``n_topics`` topics."""
    from sklearn.cluster import KMeans

    if len(vectors) < n_topics:
        raise BadInput(f"{len(vectors)} questions cannot make {n_topics} topics")
    km = KMeans(n_clusters=n_topics, random_state=seed, n_init=1).fit(vectors)
    log.info("router: %d topics from %d questions", n_topics, len(vectors))
    meta = TopicMeta(embedder=embedder.name, n_topics=n_topics, temperature=temperature, n_train=len(vectors))
    return TopicModel(np.asarray(km.cluster_centers_), meta)


class TopicScorer:
    """Soft topic weights of each query."""

    name = "topics"

    def __init__(self, topics: TopicModel, embedder: Embedder) -> None:
        if embedder.name != topics.meta.embedder:
            raise ConfigError(f"topics were made from {topics.meta.embedder!r} embeddings, got {embedder.name!r}")
        self.topics, self.embedder = topics, embedder

    def weights_from_vectors(self, vectors: np.ndarray) -> list[dict[str, float]]:
        names = self.topics.names
        return [
            {names[i]: float(w) for i in np.argsort(-row) if (w := row[i]) > 1e-6}
            for row in self.topics.weights(vectors)
        ]

    def skill_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        texts = list(texts)
        return self.weights_from_vectors(self.embedder.embed(texts)) if texts else []
