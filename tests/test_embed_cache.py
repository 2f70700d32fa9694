"""The per-text embedding cache: what it embeds, what it returns, and how it fails."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import sqlite3

import numpy as np
import pytest

from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.artefacts import PoolArtefacts
from orchestrator.pools.settings import shipped_pool
from router import train_router
from skills import CachedEmbedder, HashingEmbedder, ProfileBuilder, cached_embed
from skills.embed_cache import cache_file, text_key


class CountingEmbedder:
    """A hashing embedder that records every batch it is asked to embed."""

    def __init__(self, dim: int = 32) -> None:
        self.inner = HashingEmbedder(dim)
        self.name = self.inner.name
        self.batches: list[list[str]] = []

    def embed(self, texts):
        self.batches.append(list(texts))
        return self.inner.embed(texts)


TEXTS = ["the court ruled on the contract", "integrate x squared", "which enzyme unwinds dna"]


def test_second_call_embeds_nothing_and_returns_the_same_vectors(tmp_path):
    counting = CountingEmbedder()
    cache = CachedEmbedder(counting, tmp_path)
    assert cache.name == counting.name
    first = cache.embed(TEXTS)
    again = CachedEmbedder(counting, tmp_path).embed(TEXTS)  # a new instance reads the same file
    assert counting.batches == [TEXTS]
    assert first.dtype == np.float32 and again.dtype == np.float32
    assert np.array_equal(first, again) and np.array_equal(first, counting.inner.embed(TEXTS))
    assert (tmp_path / "hashing-32.sqlite3").is_file()
    assert cache.embed([]).shape == (0, 32)
    assert counting.batches == [TEXTS]


def test_only_new_texts_are_embedded_once_each_in_one_batch(tmp_path):
    counting = CountingEmbedder()
    cache = CachedEmbedder(counting, tmp_path)
    cache.embed(TEXTS[:1])
    out = cache.embed([TEXTS[1], TEXTS[0], TEXTS[1], TEXTS[2]])
    assert counting.batches == [TEXTS[:1], [TEXTS[1], TEXTS[2]]]
    assert cache.embedded == 3
    assert np.array_equal(out, counting.inner.embed([TEXTS[1], TEXTS[0], TEXTS[1], TEXTS[2]]))
    assert np.array_equal(cached_embed(counting, TEXTS, tmp_path), counting.inner.embed(TEXTS))
    assert len(counting.batches) == 2


@pytest.mark.parametrize("damage", [b"\x00\x01", np.full(32, np.nan, dtype="<f4").tobytes()])
def test_a_damaged_row_is_embedded_again_and_logged(tmp_path, caplog, damage):
    counting = CountingEmbedder()
    good = CachedEmbedder(counting, tmp_path).embed(TEXTS)
    with sqlite3.connect(cache_file(tmp_path, counting.name)) as db:
        db.execute("UPDATE vectors SET vector = ? WHERE key = ?", (damage, text_key(TEXTS[1])))
    with caplog.at_level(logging.WARNING, logger="skills.embed_cache"):
        out = CachedEmbedder(counting, tmp_path).embed(TEXTS)
    assert counting.batches[-1] == [TEXTS[1]]
    assert np.array_equal(out, good)
    assert "1 stored vector(s) damaged" in caplog.text
    CachedEmbedder(counting, tmp_path).embed(TEXTS)  # stored whole again
    assert len(counting.batches) == 2


def test_a_cache_that_cannot_be_used_warns_once_and_embeds(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    counting = CountingEmbedder()
    cache = CachedEmbedder(counting, blocker / "embeddings")
    with caplog.at_level(logging.WARNING, logger="skills.embed_cache"):
        first = cache.embed(TEXTS)
        second = cache.embed(TEXTS)
    assert np.array_equal(first, second) and len(counting.batches) == 2
    assert caplog.text.count("embedding without it") == 1
    not_sqlite = tmp_path / "junk"
    not_sqlite.mkdir()
    cache_file(not_sqlite, counting.name).write_bytes(b"this is no database" * 10)
    assert np.array_equal(CachedEmbedder(counting, not_sqlite).embed(TEXTS), first)


def test_a_cache_that_cannot_be_written_warns_once_and_still_reads(tmp_path, caplog):
    counting = CountingEmbedder()
    first = CachedEmbedder(counting, tmp_path).embed(TEXTS[:1])
    with sqlite3.connect(cache_file(tmp_path, counting.name)) as db:
        db.execute("CREATE TRIGGER frozen BEFORE INSERT ON vectors BEGIN SELECT RAISE(ABORT, 'frozen'); END")
    cache = CachedEmbedder(counting, tmp_path)
    with caplog.at_level(logging.WARNING, logger="skills.embed_cache"):
        out = cache.embed(TEXTS)
        cache.embed(TEXTS)
    assert np.array_equal(out[:1], first) and np.array_equal(out, counting.inner.embed(TEXTS))
    assert caplog.text.count("could not be written") == 1
    assert counting.batches[1] == TEXTS[1:]  # what was stored was read


def test_file_names_are_safe_and_distinct(tmp_path):
    assert cache_file(tmp_path, "all-MiniLM-L6-v2").name == "all-MiniLM-L6-v2.sqlite3"
    odd = {cache_file(tmp_path, name).name for name in ("a/b", "a_b", "a:b", "../a_b")}
    assert len(odd) == 4 and all("/" not in n and not n.startswith(".") for n in odd)


def _fill(folder, start):
    cache = CachedEmbedder(HashingEmbedder(32), folder)
    for i in range(start, start + 60, 6):
        cache.embed([f"text number {j}" for j in range(i, i + 6)])


def test_two_processes_share_one_cache(tmp_path):
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=_fill, args=(tmp_path, start)) for start in (0, 30)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    counting = CountingEmbedder()
    texts = [f"text number {j}" for j in range(90)]
    out = CachedEmbedder(counting, tmp_path).embed(texts)
    assert counting.batches == [] and np.array_equal(out, counting.inner.embed(texts))


TRAIN = [
    ("the court ruled the contract void", "law"),
    ("the judge heard the appeal on liability", "law"),
    ("find the derivative of x squared", "math"),
    ("integrate the polynomial from zero to one", "math"),
]


@pytest.fixture
def trained_pool(tmp_path):
    """The default pool's pool.toml with a router trained on hashed embeddings."""
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(shipped_pool("default") / "pool.toml", pool / "pool.toml")
    questions = [
        Question(id=str(i), benchmark="mmlu_pro", text=text, answer="A", category=label)
        for i, (text, label) in enumerate(TRAIN * 3)
    ]
    arts = train_router(questions, HashingEmbedder(128), n_topics=2, seed=0)
    builder = ProfileBuilder(["smollm2", "gemma3"])
    for q in questions:
        builder.add("smollm2", arts.skills_of[q.id], q.category == "law")
        builder.add("gemma3", arts.skills_of[q.id], q.category == "math")
    PoolArtefacts(pool).save_profile(builder.build())
    PoolArtefacts(pool).save_router(arts)
    return pool


def test_the_sdk_router_caches_under_the_settings_folder(trained_pool, tmp_path):
    settings = load_settings(pool=trained_pool, cache_dir=tmp_path / "cache", policy="topk", k=1)
    first = Orchestrator(settings).route("the court ruled on the contract")
    stored = cache_file(settings.embeddings_dir, "hashing-128")
    with sqlite3.connect(stored) as db:
        assert db.execute("SELECT count(*) FROM vectors").fetchone() == (1,)
    assert first.expert_names == ["smollm2"]
    again = Orchestrator(settings).route("the court ruled on the contract")
    assert again == first


def test_the_sdk_routes_when_the_cache_cannot_be_written(trained_pool, tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    settings = load_settings(pool=trained_pool, cache_dir=blocker, policy="topk", k=1)
    with caplog.at_level(logging.WARNING, logger="skills.embed_cache"):
        decisions = Orchestrator(settings).router().route(["the derivative of the integral", "the court ruled"])
    assert [d.expert_names for d in decisions] == [["gemma3"], ["smollm2"]]
    assert caplog.text.count("embedding without it") == 1
