"""Freed memory goes back to the system between batches (``orchestrator.service.memory``): the
mechanism on its own (a heap that keeps what was freed until a trim), the throttle, and the
dispatcher running it after each batch of a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from orchestrator.service.memory import FreedMemory
from skills import SentenceEmbedder
from tests.live_server import serving, wait_ready
from tests.test_service import Engines, make_app

ROOT = Path(__file__).resolve().parents[1]


FRAGMENT = """
import json, threading, psutil
from orchestrator.service.memory import FreedMemory
from skills import SentenceEmbedder
from pathlib import Path
process, kept, sizes = psutil.Process(), [], {}
def rss(): return process.memory_info().rss / 2**20
def batch():  # in a thread of its own, as a batch runs: its own arena of malloc
    block = bytearray(8_000_000)
    del block  # a large block freed: malloc's mmap threshold rises to its size
    big = []
    for i in range(300):  # blocks under the new threshold, cut from the heap, among small ones that stay
        big.append(bytearray(400_000 + 997 * i))
        kept.append(bytes(600 + i))
    sizes["allocated"] = rss()
    big.clear()
thread = threading.Thread(target=batch)
thread.start()
thread.join()
sizes["freed"] = rss()
freed = FreedMemory()
freed.release(now=True)
sizes["released"] = rss()
print(json.dumps({**sizes, "available": freed.available, "trims": freed.released}))
"""


def test_freed_heap_memory_goes_back_to_the_system():
    """About 115 MB freed inside a thread's heap stay resident until ``release`` (a fresh process,
    so nothing else shapes its heaps)."""
    run = subprocess.run([sys.executable, "-c", FRAGMENT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    sizes = json.loads(run.stdout)
    if not sizes["available"]:
        pytest.skip("no glibc malloc_trim here")
    if sizes["allocated"] - sizes["freed"] > 60:
        pytest.skip(f"this malloc gave the memory back by itself ({sizes})")
    assert sizes["freed"] - sizes["released"] > 60, sizes
    assert sizes["trims"] == 1


def test_release_runs_at_most_once_per_interval():
    now = [100.0]
    freed = FreedMemory(every_s=1.0, clock=lambda: now[0])
    if not freed.available:
        pytest.skip("no glibc malloc_trim here")
    freed.release()
    now[0] += 0.5
    freed.release()
    assert freed.released == 1
    freed.release(now=True)
    now[0] += 1.0
    freed.release()
    assert freed.released == 3


def test_the_service_releases_freed_memory_after_the_warm_up_and_once_idle(tmp_path):
    app = make_app(tmp_path, Engines())
    with serving(app) as url:
        wait_ready(url)
        freed = app.state.service.freed
        before = freed.released
        reply = httpx.post(f"{url}/v1/answer", json={"question": "Flat?"}, timeout=60)
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 10
        while freed.released == before:  # after the batch, or once idle after it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        settled = freed.released
        time.sleep(1.0)
        idle = freed.released
    if not freed.available:
        pytest.skip("no glibc malloc_trim here")
    assert before >= 1  # after the warm-up
    assert settled > before and idle == settled  # and after the batch, then nothing more while idle


def test_the_encoder_keeps_its_threads_from_call_to_call():
    """New threads per call took malloc arenas in turn and fragmented them all; the embedder's
    workers now live as long as it does."""
    embedder = SentenceEmbedder(batch_size=2, workers=2)
    texts = [f"Question {i}: which planet is the largest, and why?" for i in range(8)]

    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("embed")}

    before = workers()
    first = embedder.embed(texts)
    kept = workers() - before
    second = embedder.embed(texts[::-1])
    assert len(kept) == 2 and workers() - before == kept  # the same two threads, still there
    assert np.allclose(first[::-1], second, atol=1e-5)
