"""Query -> skill probabilities: a linear classifier on sentence embeddings.

``train_classifier`` fits scikit-learn's calibrated logistic regression on labelled questions
(one regression per cross-validation fold, each with per-skill Platt scaling, averaged). The
fitted model is kept as plain numbers, never as a pickled estimator: ``SkillClassifier``
predicts from its coefficient arrays with numpy alone, ``to_payload()`` turns it into a
JSON-able ``ClassifierPayload`` and ``from_payload()`` rebuilds it. Where the payload is stored
is not this module's concern (the orchestrator's pool artefacts decide).

Questions of one label alone (a benchmark with a single category) make a classifier with that
one label and no members: every query gets it with probability 1.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.errors import BadInput
from router._numbers import float32_rows
from skills.embed import Embedder
from skills.names import normalise_skill

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 1 kept the estimator in a pickle beside the JSON; no longer read


class ClassifierMeta(BaseModel):
    """What a classifier was trained on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(..., min_length=1, description="Skills, in probability-column order.")
    embedder: str = Field(..., min_length=1, description="Name of the embedder of its inputs.")
    n_features: int = Field(..., ge=1, description="Length of the embedding vectors it takes.")
    n_train: int = Field(..., ge=1, description="Training questions.")
    calibrated: bool = Field(True, description="Platt-scaled cross-validation members (false with one label).")
    sklearn_version: str = Field("", description="scikit-learn version that fitted it.")


class LinearMember(BaseModel):
    """One fitted logistic regression, and its per-row Platt scaling when calibrated.

    ``coef`` has one row per label (or a single row, for the second label, when there are two
    labels); a calibrated member turns each row's score ``s`` into ``1 / (1 + exp(a s + b))``.
    ``coef`` and ``intercept`` are float32 values (the embeddings' precision), written in their
    shortest decimal form; prediction runs in float64.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    coef: list[list[float]] = Field(..., min_length=1)
    intercept: list[float] = Field(..., min_length=1)
    platt_a: list[float] | None = None
    platt_b: list[float] | None = None

    @model_validator(mode="after")
    def _shapes(self) -> LinearMember:
        rows, width = len(self.coef), len(self.coef[0])
        if width == 0 or any(len(row) != width for row in self.coef):
            raise ValueError("coef rows must all have the same, non-zero length")
        if len(self.intercept) != rows:
            raise ValueError(f"intercept has {len(self.intercept)} values for {rows} coef rows")
        if (self.platt_a is None) != (self.platt_b is None):
            raise ValueError("platt_a and platt_b come together")
        if self.platt_a is not None and (len(self.platt_a) != rows or len(self.platt_b or ()) != rows):
            raise ValueError(f"platt_a and platt_b need {rows} values each")
        return self


class ClassifierPayload(BaseModel):
    """A skill classifier as plain data: what it was trained on and its linear members."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = Field(
        FORMAT_VERSION, description="2: coefficients stored here (1 used a pickle and is not read)."
    )
    meta: ClassifierMeta
    members: list[LinearMember] = Field(..., description="None with one label (it is certain), else at least one.")

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value == 1:
            raise ValueError(
                "format 1 kept the classifier in a pickle, which is never read; train it again (coe profile)"
            )
        if value != FORMAT_VERSION:
            raise ValueError(f"format {value} is not known (this version reads {FORMAT_VERSION})")
        return value

    @model_validator(mode="after")
    def _members_fit_labels(self) -> ClassifierPayload:
        labels = len(self.meta.labels)
        if len(set(self.meta.labels)) != labels:
            raise ValueError("meta.labels must be distinct")
        if labels == 1:
            if self.members or self.meta.calibrated:
                raise ValueError("a classifier of one label has no members and is not calibrated")
            return self
        if not self.members:
            raise ValueError(f"{labels} labels need at least one member")
        expected_rows = 1 if labels == 2 else labels
        width = self.meta.n_features
        for i, member in enumerate(self.members):
            if len(member.coef) != expected_rows:
                raise ValueError(f"members[{i}] has {len(member.coef)} coef rows; {labels} labels need {expected_rows}")
            if len(member.coef[0]) != width:
                raise ValueError(f"members[{i}] takes {len(member.coef[0])} features, meta.n_features is {width}")
            if (member.platt_a is not None) != self.meta.calibrated:
                raise ValueError(
                    f"members[{i}] {'lacks' if self.meta.calibrated else 'has'} Platt scaling "
                    f"but calibrated is {self.meta.calibrated}"
                )
        return self


class _Member:
    """One member as arrays, ready to predict."""

    def __init__(self, spec: LinearMember) -> None:
        self.coef = np.asarray(spec.coef, dtype=np.float32).astype(np.float64)
        self.intercept = np.asarray(spec.intercept, dtype=np.float32).astype(np.float64)
        self.platt = (
            (np.asarray(spec.platt_a, dtype=np.float64), np.asarray(spec.platt_b, dtype=np.float64))
            if spec.platt_a is not None
            else None
        )

    def spec(self) -> LinearMember:
        platt = {} if self.platt is None else {"platt_a": self.platt[0].tolist(), "platt_b": self.platt[1].tolist()}
        return LinearMember(coef=float32_rows(self.coef), intercept=float32_rows(self.intercept), **platt)

    def predict_proba(self, vectors: np.ndarray, n_labels: int) -> np.ndarray:
        scores = vectors @ self.coef.T + self.intercept
        if self.platt is not None:  # one-vs-rest Platt scaling, then rows renormalised
            a, b = self.platt
            proba = _expit(-(a * scores + b))
            if n_labels == 2:
                return np.column_stack([1.0 - proba[:, 0], proba[:, 0]])
            total = proba.sum(axis=1, keepdims=True)
            uniform = np.full_like(proba, 1.0 / n_labels)
            return np.divide(proba, total, out=uniform, where=total != 0)
        if n_labels == 2:
            positive = _expit(scores[:, 0])
            return np.column_stack([1.0 - positive, positive])
        scores -= scores.max(axis=1, keepdims=True)  # multinomial: softmax of the scores
        out = np.exp(scores)
        return out / out.sum(axis=1, keepdims=True)


def _expit(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


class SkillClassifier:
    """Skill probabilities from an average of linear members; the labels name the columns."""

    def __init__(self, meta: ClassifierMeta, members: Sequence[LinearMember]) -> None:
        payload = ClassifierPayload(meta=meta, members=list(members))  # checks the shapes
        self.meta = payload.meta
        self._members = [_Member(m) for m in payload.members]

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @property
    def n_features(self) -> int:
        return self.meta.n_features

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of skill probabilities (columns in ``labels`` order)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.n_features:
            raise BadInput(f"classifier takes rows of {self.n_features} numbers, got shape {vectors.shape}")
        if not self._members:  # one label: certain
            return np.ones((len(vectors), 1))
        total = np.zeros((len(vectors), len(self.labels)))
        for member in self._members:
            total += member.predict_proba(vectors, len(self.labels))
        return total / len(self._members)

    def to_payload(self) -> ClassifierPayload:
        """The classifier as plain JSON-able data."""
        return ClassifierPayload(meta=self.meta, members=[m.spec() for m in self._members])

    @classmethod
    def from_payload(cls, payload: ClassifierPayload) -> SkillClassifier:
        return cls(payload.meta, payload.members)


def _members_of(estimator, labels: list[str]) -> list[LinearMember]:
    """The linear members of a fitted LogisticRegression or sigmoid CalibratedClassifierCV."""
    fitted = getattr(estimator, "calibrated_classifiers_", None)
    if fitted is None:
        return [LinearMember(coef=float32_rows(estimator.coef_), intercept=float32_rows(estimator.intercept_))]
    members = []
    for pair in fitted:
        inner = pair.estimator
        if [str(c) for c in inner.classes_] != labels:  # stratified folds keep every label
            raise BadInput(f"a calibration fold saw labels {list(inner.classes_)}, not {labels}")
        members.append(
            LinearMember(
                coef=float32_rows(inner.coef_),
                intercept=float32_rows(inner.intercept_),
                platt_a=[float(c.a_) for c in pair.calibrators],
                platt_b=[float(c.b_) for c in pair.calibrators],
            )
        )
    return members


def train_classifier(
    texts: Sequence[str] | None,
    labels: Sequence[str],
    embedder: Embedder,
    *,
    vectors: np.ndarray | None = None,
    calibrate: bool = True,
    seed: int = 0,
    c: float = 4.0,
) -> SkillClassifier:
    """Fit skill probabilities on ``texts`` (or their precomputed ``vectors``) labelled ``labels``;
    one distinct label gives the classifier that always answers it."""
    from sklearn import __version__ as sklearn_version
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    labels = [normalise_skill(label) for label in labels]
    if vectors is None:
        if texts is None:
            raise BadInput("train_classifier needs texts or vectors")
        vectors = embedder.embed(list(texts))
    if len(vectors) != len(labels):
        raise BadInput(f"{len(vectors)} texts but {len(labels)} labels")
    counts = Counter(labels)
    if not counts:
        raise BadInput("a skill classifier needs labelled questions; none were given")
    if "" in counts:
        raise BadInput(f"{counts['']} training label(s) are empty")
    if len(counts) == 1:
        (label,) = counts
        log.info("router: one skill (%s) in %d questions; every query gets it", label, len(labels))
        meta = ClassifierMeta(
            labels=[label],
            embedder=embedder.name,
            n_features=int(np.shape(vectors)[1]),
            n_train=len(labels),
            calibrated=False,
            sklearn_version=sklearn_version,
        )
        return SkillClassifier(meta, [])
    started = time.perf_counter()
    base = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    folds = min(3, min(counts.values()))
    if calibrate and folds >= 2:
        estimator = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=True)
    else:
        calibrate, estimator = False, base
    estimator.fit(vectors, labels)
    names = [str(x) for x in estimator.classes_]
    meta = ClassifierMeta(
        labels=names,
        embedder=embedder.name,
        n_features=int(np.shape(vectors)[1]),
        n_train=len(labels),
        calibrated=calibrate,
        sklearn_version=sklearn_version,
    )
    log.info(
        "router: trained skill classifier on %d questions, %d skills, %.1f s",
        len(labels),
        len(meta.labels),
        time.perf_counter() - started,
    )
    return SkillClassifier(meta, _members_of(estimator, names))
