"""No vLLM process outlives its owner: a script that holds a VLLMEngine is killed with SIGKILL
while the model loads and while it generates; every process it started is gone 10 s later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from pathlib import Path

from batching.engines.vllm_engine import VLLMEngine
from batching.spec import ExpertSpec
from common.requests import Request


def main() -> None:
    spec = ExpertSpec(
        name="smollm2",
        source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct", "max_model_len": 1024},
        sampling={"max_tokens": 1000},
    )
    engine = VLLMEngine(spec, cache_dir=Path(sys.argv[1]))
    print("loading", flush=True)
    engine.load()
    print("generating", flush=True)
    engine.generate([Request.user(f"r{i}", "Write a very long story about the sea.") for i in range(16)])
    print("finished", flush=True)


if __name__ == "__main__":
    main()
"""


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _has_engine_core(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        try:
            if "EngineCore" in " ".join(proc.cmdline()) + proc.name():
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def _run_and_kill(cache_dir: Path, tmp_path: Path, *, after: str) -> None:
    script = tmp_path / "hold_engine.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen(
        [sys.executable, str(script), str(cache_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "loading"
        if after == "generating":
            assert owner.stdout.readline().strip() == "generating"
            time.sleep(3.0)  # well inside the batch (16 answers of up to 1000 tokens)
        deadline = time.monotonic() + 300
        while not _has_engine_core(_descendants(owner.pid)):  # vLLM's engine process is up
            assert owner.poll() is None and time.monotonic() < deadline, "vLLM's engine never started"
            time.sleep(0.2)
        procs = _descendants(owner.pid)
        groups = {os.getpgid(p.pid) for p in procs}
        assert owner.poll() is None, "the script ended before it could be killed"
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"alive 10 s after their owner was killed: {[(p.pid, p.name()) for p in alive]}"
        in_groups = [p.pid for p in psutil.process_iter() if _pgid(p.pid) in groups - {os.getpgrp()}]
        assert not in_groups, f"processes left in the engine's process group: {in_groups}"
    finally:
        owner.kill()
        owner.wait(5)
        owner.stdout.close()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.mark.parametrize("after", ["loading", "generating"])
def test_sigkilled_owner_leaves_no_vllm_process(cache_dir: Path, tmp_path: Path, after: str) -> None:
    _run_and_kill(cache_dir, tmp_path, after=after)
