"""The main job for real: `coe ask` on the default pool, SmolLM2 and Gemma on vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil


def _model_processes() -> set[int]:
    """Every live process that is a vLLM engine or a spawned model child, on the whole machine."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and ("VLLM" in cmdline or "spawn_main" in cmdline):
            found.add(proc.info["pid"])
    return found


def test_coe_ask_default_pool(cache_dir):
    before = _model_processes()
    env = {**os.environ, "COE_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "ask",
            "--json",
            "--no-skip",  # the aggregator writes the answer even if both experts agree
            "--option",
            "Oxygen",
            "--option",
            "Carbon dioxide",
            "--option",
            "Nitrogen",
            "Which gas do plants take from the air to make sugar?",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    trace = answer["trace"]
    assert [c["expert"] for c in trace["experts"]] == ["gemma3", "smollm2"] or sorted(
        c["expert"] for c in trace["experts"]
    ) == ["gemma3", "smollm2"]
    for call in trace["experts"]:
        assert call["error"] is None, call
        assert call["text"].strip() and call["tokens_out"] > 0 and call["tokens_in"] > 0
    aggregation = trace["aggregation"]
    assert trace["aggregator"] == "smollm2" and aggregation["method"] == "synthesis:smollm2"
    assert aggregation["tokens_out"] > 0 and "Which gas do plants take" in aggregation["prompt"]
    assert answer["text"].strip()
    assert trace["loads"] == 2  # smollm2 answered and aggregated on one load
    assert trace["timings"]["run"] > 0 and trace["timings"]["load"] > 0
    # progress per phase and per model went to stderr
    assert "[phase 0]" in done.stderr and "model loaded" in done.stderr
    assert not (_model_processes() - before)  # every model process was given back
