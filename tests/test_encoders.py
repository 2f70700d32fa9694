"""The ONNX encoders (skills.encoders): names, the one-off export into a cache folder (reused,
atomic, stale temporary folders cleaned), and the vectors against the torch encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import skills.encoders as encoders
from common.errors import BadInput, ConfigError
from skills import OnnxEmbedder, SentenceEmbedder, known_encoders, make_embedder

INT8 = "all-MiniLM-L6-v2-onnx-int8"
FP32 = "all-MiniLM-L6-v2-onnx"
TEXTS = [
    "What is the derivative of x^3 + 2x with respect to x?",
    "Which Supreme Court case established the principle of judicial review?",
    "Explain how an enzyme lowers the activation energy of a reaction.",
    "hello",
]


def test_make_embedder_knows_each_variant_by_its_own_name(tmp_path):
    names = known_encoders()
    assert names[0] == "all-MiniLM-L6-v2" and FP32 in names and INT8 in names
    for name in (FP32, INT8):
        embedder = make_embedder(name, cache_dir=tmp_path)
        assert isinstance(embedder, OnnxEmbedder) and embedder.name == name
        assert embedder.cache_dir == tmp_path
    assert isinstance(make_embedder(str(encoders.base_model_path())), SentenceEmbedder)
    assert not list(tmp_path.iterdir())  # nothing is exported before the first embed


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2-onnx-int4", "nope", "hashing-x"])
def test_unknown_encoder_is_one_line_naming_the_known_ones(name):
    with pytest.raises(ConfigError) as caught:
        make_embedder(name)
    message = str(caught.value)
    assert "\n" not in message and f"unknown encoder {name!r}" in message
    assert all(known in message for known in known_encoders())
    with pytest.raises(ConfigError, match="unknown encoder"):
        OnnxEmbedder(name)
    with pytest.raises(BadInput, match="batch_size"):
        OnnxEmbedder(INT8, batch_size=0)


@pytest.fixture
def fake_export(monkeypatch):
    """The torch export and the quantisation replaced by writing marker files; counts the exports."""
    calls: list[Path] = []

    def export(source: Path, target: Path) -> None:
        calls.append(target)
        target.write_bytes(b"float32 graph")

    def quantise(model: Path, target: Path) -> None:
        target.write_bytes(b"int8 of " + model.read_bytes())

    monkeypatch.setattr(encoders, "_export_onnx", export)
    monkeypatch.setattr(encoders, "_quantise", quantise)
    return calls


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_export_is_made_once_then_reused(tmp_path, fake_export):
    folder = encoders.export_encoder(INT8, tmp_path)
    assert folder == tmp_path / INT8
    assert (folder / "model.onnx").read_bytes() == b"int8 of float32 graph"
    assert {p.name for p in folder.iterdir()} == {
        "model.onnx",
        "tokenizer.json",
        "sentence_bert_config.json",
        "pooling.json",
        "encoder.json",
    }
    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["name"] == INT8 and meta["format"] == encoders.FORMAT
    assert encoders.export_encoder(INT8, tmp_path) == folder
    assert encoders.find_export(INT8, tmp_path) == folder
    assert len(fake_export) == 1
    assert encoders.export_encoder(FP32, tmp_path) == tmp_path / FP32  # another variant, its own folder
    assert (tmp_path / FP32 / "model.onnx").read_bytes() == b"float32 graph"
    assert len(fake_export) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [FP32, INT8]  # no temporary folder left


def test_export_of_another_recipe_is_made_again(tmp_path, fake_export):
    folder = encoders.export_encoder(INT8, tmp_path)
    meta = json.loads((folder / "encoder.json").read_text())
    (folder / "encoder.json").write_text(json.dumps({**meta, "format": encoders.FORMAT - 1}))
    assert encoders.find_export(INT8, tmp_path) is None
    assert encoders.export_encoder(INT8, tmp_path) == folder
    assert json.loads((folder / "encoder.json").read_text())["format"] == encoders.FORMAT
    assert len(fake_export) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [INT8]


def test_a_killed_export_leaves_nothing_and_its_leftovers_are_cleaned(tmp_path, fake_export, monkeypatch):
    def killed(source: Path, target: Path) -> None:
        target.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(encoders, "_export_onnx", killed)
    with pytest.raises(KeyboardInterrupt):
        encoders.export_encoder(INT8, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert encoders.find_export(INT8, tmp_path) is None

    # a process killed outright leaves its temporary folder: the next export removes it, but not
    # the one of a process still running (this one)
    gone = tmp_path / f".{INT8}.partial-{dead_pid()}-abc"
    running = tmp_path / f".{INT8}.partial-{os.getpid()}-def"
    other = tmp_path / f".{FP32}.partial-{dead_pid()}-ghi"
    for leftover in (gone, running, other):
        leftover.mkdir()
        (leftover / "model.onnx").write_bytes(b"half")
    monkeypatch.setattr(encoders, "_export_onnx", lambda source, target: target.write_bytes(b"float32 graph"))
    folder = encoders.export_encoder(INT8, tmp_path)
    assert (folder / "model.onnx").read_bytes() == b"int8 of float32 graph"
    assert not gone.exists() and running.exists() and other.exists()
    assert encoders.clean_partial(tmp_path, FP32) == [other]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """Both variants really exported from the packaged model (seconds), once for the module."""
    folder = tmp_path_factory.mktemp("encoders")
    for name in (FP32, INT8):
        encoders.export_encoder(name, folder)
    return folder


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceEmbedder().embed(TEXTS)


@pytest.mark.real  # the exports take seconds
def test_onnx_vectors_match_the_torch_encoder(exported, torch_vectors):
    for name, least in ((FP32, 0.9999), (INT8, 0.97)):
        embedder = OnnxEmbedder(name, exported, batch_size=2, workers=2)
        vectors = embedder.embed(TEXTS)
        assert embedder.export_seconds == 0.0  # found made, not exported again
        assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = (vectors * torch_vectors).sum(axis=1)
        assert cosines.min() > least, (name, cosines)
        # one text alone gives the vector it has in a batch: the same to rounding in float32 (the
        # padding is masked out); in int8 nearly (activations are quantised by each batch's range)
        alone = embedder.embed(TEXTS[1:2])[0]
        assert np.allclose(alone, vectors[1], atol=1e-4) if name == FP32 else alone @ vectors[1] > 0.99
        assert embedder.embed([]).shape == (0, 384)
        with pytest.raises(BadInput):
            embedder.embed("one string")
    # the int8 graph is smaller than the float32 one
    assert (exported / INT8 / "model.onnx").stat().st_size < 0.75 * (exported / FP32 / "model.onnx").stat().st_size


@pytest.mark.real
def test_the_first_embed_exports_and_says_how_long(tmp_path, monkeypatch, exported):
    calls: list[str] = []
    real = encoders.export_encoder

    def counting(name, cache_dir=None, source=None):
        calls.append(name)
        return real(name, cache_dir, source)

    monkeypatch.setattr(encoders, "export_encoder", counting)
    first = make_embedder(FP32, cache_dir=tmp_path)
    first.embed(TEXTS[:1])
    assert calls == [FP32] and first.export_seconds is not None and first.export_seconds > 0
    second = make_embedder(FP32, cache_dir=tmp_path)
    assert np.array_equal(second.embed(TEXTS[:1]), first.embed(TEXTS[:1]))
    assert calls == [FP32] and second.export_seconds == 0.0


@pytest.mark.real  # exports the int8 encoder and embeds a few hundred questions with it
@pytest.mark.data
def test_a_pool_profiled_with_an_encoder_routes_with_it(tmp_path, data_dir, replay_file):
    import shutil

    from eval import get_benchmark
    from orchestrator import Orchestrator, load_settings
    from orchestrator.pools.settings import PROJECT_ROOT
    from orchestrator.workflows.profile import profile_pool, sample

    pool = tmp_path / "pool"
    shutil.copytree(
        PROJECT_ROOT / "pools" / "replay-small",
        pool,
        ignore=shutil.ignore_patterns("profiles", "router", "active.json"),
    )
    settings = load_settings(pool=pool, data_dir=data_dir, cache_dir=tmp_path / "cache", policy="adaptive")
    questions = sample(get_benchmark("mmlu_pro").questions(data_dir), 300, seed=1)
    profile_pool(Orchestrator(settings), questions, embedder=INT8)
    assert encoders.find_export(INT8, settings.encoders_dir) is not None  # exported into the settings' cache
    coe = Orchestrator(settings)
    assert coe.pool.artefacts.latest_classifier().meta.embedder == INT8
    scorer = coe.router("adaptive").scorer
    parts = [s for s, _ in getattr(scorer, "parts", [(scorer, 1.0)])]
    for part in parts:
        embedder = part.embedder.embedder  # the settings' embedding cache around the encoder
        assert isinstance(embedder, OnnxEmbedder) and embedder.name == INT8
        assert embedder.cache_dir == settings.encoders_dir
    decision = coe.route("Compute the integral of 2x from 0 to 3.")
    assert decision.skills and 1 <= len(decision.experts) <= 6
    assert parts[0].embedder.embedder.export_seconds == 0.0  # routing found the profile's export
