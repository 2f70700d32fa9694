"""Query -> skill probabilities: a scikit-learn classifier on sentence embeddings.

``train_classifier`` fits a calibrated logistic regression on labelled questions;
``save_classifier`` writes it to ``<pool_dir>/router/classifier.v<N>.joblib`` with a JSON
beside it (format version, labels, embedder name, training size); ``load_classifier``
reads it back and checks the two agree.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.artefacts import latest, read_model, write_new_version
from common.errors import BadInput, ConfigError, NotFound
from skills.embed import Embedder
from skills.names import normalise_skill

log = logging.getLogger(__name__)

ROUTER_DIR = "router"
FORMAT_VERSION = 1


class ClassifierMeta(BaseModel):
    """The JSON written beside a classifier artefact."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    labels: list[str] = Field(..., min_length=2)
    embedder: str = Field(..., min_length=1)
    n_train: int = Field(..., ge=1)
    calibrated: bool = True
    sklearn_version: str = ""


class SkillClassifier:
    """A fitted estimator plus the labels its probability columns stand for."""

    def __init__(self, estimator, meta: ClassifierMeta) -> None:
        self.estimator = estimator
        self.meta = meta
        classes = [str(c) for c in estimator.classes_]
        if classes != meta.labels:
            raise ConfigError(f"classifier classes {classes} differ from its labels {meta.labels}")

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of skill probabilities (columns in ``labels`` order)."""
        return np.asarray(self.estimator.predict_proba(vectors), dtype=np.float64)


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
    """Fit skill probabilities on ``texts`` (or their precomputed ``vectors``) labelled ``labels``."""
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
    if len(counts) < 2:
        raise BadInput("a skill classifier needs at least two distinct labels")
    started = time.perf_counter()
    base = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    folds = min(3, min(counts.values()))
    if calibrate and folds >= 2:
        estimator = CalibratedClassifierCV(base, method="sigmoid", cv=folds)
    else:
        calibrate, estimator = False, base
    estimator.fit(vectors, labels)
    meta = ClassifierMeta(labels=[str(x) for x in estimator.classes_], embedder=embedder.name,
                          n_train=len(labels), calibrated=calibrate, sklearn_version=sklearn_version)
    log.info("router: trained skill classifier on %d questions, %d skills, %.1f s", len(labels),
             len(meta.labels), time.perf_counter() - started)
    return SkillClassifier(estimator, meta)


def save_classifier(classifier: SkillClassifier, pool_dir: Path) -> Path:
    """Write the next version under ``<pool_dir>/router/``; returns the JSON file's path."""
    import joblib

    meta_path = write_new_version(Path(pool_dir) / ROUTER_DIR, "classifier", classifier.meta.model_dump_json(indent=1))
    joblib.dump(classifier.estimator, meta_path.with_suffix(".joblib"))
    return meta_path


def load_classifier(path: Path) -> SkillClassifier:
    """Read a classifier: ``path`` is its JSON file, or a pool directory (latest version)."""
    import joblib

    path = Path(path)
    if path.is_dir():
        path = latest(path / ROUTER_DIR if (path / ROUTER_DIR).is_dir() else path, "classifier", "classifier")
    if not path.is_file():
        raise NotFound(f"classifier file {path} does not exist")
    meta = read_model(path, ClassifierMeta)
    blob = path.with_suffix(".joblib")
    if not blob.is_file():
        raise NotFound(f"classifier model {blob} (beside {path.name}) does not exist")
    try:
        estimator = joblib.load(blob)
    except Exception as exc:  # unpickling can fail in many ways; all mean a bad artefact
        raise ConfigError(f"{blob}: not a readable classifier: {exc}") from exc
    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        raise ConfigError(f"{blob}: holds a {type(estimator).__name__}, not a fitted classifier")
    return SkillClassifier(estimator, meta)
