"""The engine contract without vLLM: results reported as they finish, the vLLM options derived
once for both ways of starting vLLM, guarded process groups, and the cause read from a log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from batching.engines import FakeEngine, ReplayEngine
from batching.engines.vllm_engine import VLLMEngine
from batching.engines.vllm_options import engine_args
from batching.spec import ExpertSpec, VLLMSource
from common.errors import ConfigError, EngineError, EngineLoadError
from common.requests import Generation, Request

ROOT = Path(__file__).resolve().parent.parent


def fake_spec() -> ExpertSpec:
    return ExpertSpec(name="fake", source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"})


def test_fake_engine_reports_each_result_before_the_next_is_made() -> None:
    made: list[str] = []
    seen: list[tuple[int, str, int]] = []

    def answer(spec: ExpertSpec, request: Request) -> str:
        made.append(request.id)
        return f"answer to {request.id}"

    engine = FakeEngine(fake_spec(), answer=answer)
    engine.load()
    requests = [Request.user(f"r{i}", f"question {i}") for i in range(4)]
    out = engine.generate(requests, on_result=lambda i, g: seen.append((i, g.request_id, len(made))))
    assert [g.request_id for g in out] == ["r0", "r1", "r2", "r3"]
    assert seen == [(0, "r0", 1), (1, "r1", 2), (2, "r2", 3), (3, "r3", 4)]  # reported as each was made
    assert engine.generate(requests) == out  # on_result stays optional


def test_fake_engine_failure_comes_after_the_finished_ones_were_reported() -> None:
    seen: list[int] = []
    engine = FakeEngine(fake_spec(), fail_on=lambda r: r.id == "r2")
    engine.load()
    with pytest.raises(EngineError, match="failed on request 'r2'"):
        engine.generate([Request.user(f"r{i}", "q") for i in range(4)], on_result=lambda i, g: seen.append(i))
    assert seen == [0, 1]


def test_an_exception_in_on_result_ends_the_batch() -> None:
    engine = FakeEngine(fake_spec())
    engine.load()

    def checkpoint(i: int, generation: Generation) -> None:
        if i == 1:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        engine.generate([Request.user(f"r{i}", "q") for i in range(3)], on_result=checkpoint)
    assert engine.batches == [["r0", "r1", "r2"]]


def test_replay_engine_reports_each_record(tmp_path: Path, replay_spec) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(json.dumps({"model": "m", "question_id": q, "text": f"t{q}"}) for q in (1, 2)) + "\n")
    engine = ReplayEngine(replay_spec(path, "m"))
    seen: list[tuple[int, str]] = []
    out = engine.generate(
        [Request.user("a", "q", question_id="2"), Request.user("b", "q", question_id="1")],
        on_result=lambda i, g: seen.append((i, g.text)),
    )
    assert seen == [(0, "t2"), (1, "t1")] and [g.text for g in out] == ["t2", "t1"]


# -- vLLM options: one derivation, two ways of starting vLLM ---------------------------------------


def test_cpu_options_and_the_server_flags_say_the_same() -> None:
    source = VLLMSource(model="packaged:x", max_model_len=1024, max_num_seqs=8, kv_cache_gib=2)
    args = engine_args(source, "/models/x", cpu=True, seed=7, chat_template="{{ x }}", cpus=(1, 0, 1))
    kwargs = args.llm_kwargs()
    assert kwargs == {
        "model": "/models/x",
        "dtype": "float32",  # 'auto' on a CPU
        "max_model_len": 1024,
        "max_num_seqs": 8,
        "enforce_eager": True,
        "seed": 7,
        "enable_chunked_prefill": False,  # per-request seeds crash chunked prefill on the CPU build
        "max_num_batched_tokens": 4096,
    }
    flags = args.server_flags(served_name="smol", host="127.0.0.1", port=8011)
    assert flags[:8] == ["--model", "/models/x", "--served-model-name", "smol", "--host", "127.0.0.1", "--port", "8011"]
    pairs = " ".join(flags[8:])
    for fragment in ("--dtype float32", "--max-model-len 1024", "--max-num-seqs 8", "--seed 7",
                     "--max-num-batched-tokens 4096", "--chat-template {{ x }}"):  # fmt: skip
        assert fragment in pairs
    assert "--enforce-eager" in flags and "--no-enable-chunked-prefill" in flags
    assert args.environment() == {
        "GOMP_SPINCOUNT": "3000",  # threads spin a few microseconds between parallel regions, then sleep
        "SYMBOLIC_COE_IDLE_WAITS": "1",  # vLLM's processes nap, not spin, waiting on each other (_vllm_plugin)
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "0,1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def test_cpu_defaults_bind_every_allowed_core_and_fractional_kv_cache_goes_in_bytes() -> None:
    args = engine_args(VLLMSource(model="m", kv_cache_gib=0.5), "m", cpu=True)
    assert args.cpus == tuple(sorted(os.sched_getaffinity(0)))
    assert args.llm_kwargs()["kv_cache_memory_bytes"] == 1 << 29
    assert "VLLM_CPU_KVCACHE_SPACE" not in args.environment()
    assert "--kv-cache-memory-bytes" in args.server_flags(served_name="m", host="h", port=1)


def test_short_context_keeps_the_batch_token_limit_within_what_vllm_accepts() -> None:
    args = engine_args(VLLMSource(model="m", max_model_len=8192, max_num_seqs=2), "m", cpu=True)
    assert args.max_num_batched_tokens == 8192  # never below the context without chunking
    args = engine_args(VLLMSource(model="m", max_model_len=256, max_num_seqs=4), "m", cpu=True)
    assert args.max_num_batched_tokens == 1024  # nor above max_num_seqs * max_model_len


def test_gpu_options() -> None:
    source = VLLMSource(model="org/model", enforce_eager=False, tensor_parallel_size=2, gpu_memory_utilization=0.5)
    args = engine_args(source, "org/model", cpu=False)
    assert args.llm_kwargs() == {
        "model": "org/model",
        "dtype": "auto",
        "max_model_len": 2048,
        "max_num_seqs": 32,
        "enforce_eager": False,
        "seed": 0,
        "gpu_memory_utilization": 0.5,
        "tensor_parallel_size": 2,
    }
    flags = args.server_flags(served_name="m", host="h", port=1)
    assert "--no-enforce-eager" in flags and "--tensor-parallel-size" in flags
    assert args.environment() == {}


def test_tensor_parallel_ranks_split_the_cores() -> None:
    source = VLLMSource(model="m", tensor_parallel_size=2)
    args = engine_args(source, "m", cpu=True, cpus=(0, 1, 2, 3))
    assert args.environment()["VLLM_CPU_OMP_THREADS_BIND"] == "0,1|2,3"
    with pytest.raises(ConfigError, match="2 tensor-parallel ranks need at least 2 cores"):
        engine_args(source, "m", cpu=True, cpus=(3,))


def test_empty_core_set_is_refused() -> None:
    with pytest.raises(EngineLoadError, match="cpus is empty"):
        VLLMEngine(fake_spec(), cache_dir=Path("."), cpus=())


# -- guarded process groups -------------------------------------------------------------------------

OWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "batching.engines._orphans", str(__import__("os").getpid()),
                          sys.executable, "-c", "import subprocess, sys, time; "
                          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def test_guarded_group_dies_with_its_owner_even_by_sigkill() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        guard = int(owner.stdout.readline())
        deadline = time.monotonic() + 20
        while len(psutil.Process(guard).children(recursive=True)) < 2:  # the command and its own child
            assert time.monotonic() < deadline, "the guarded command did not start"
            time.sleep(0.1)
        group = [psutil.Process(guard), *psutil.Process(guard).children(recursive=True)]
        assert {os.getpgid(p.pid) for p in group} == {guard}  # one group, led by the guard
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        gone, alive = psutil.wait_procs(group, timeout=10)
        assert not alive, f"still running 10 s after the owner was killed: {[p.pid for p in alive]}"
    finally:
        owner.kill()
        owner.wait(5)
        owner.stdout.close()


def test_log_cause_is_the_root_error_not_the_engine_dead_notice(tmp_path: Path) -> None:
    engine = VLLMEngine(fake_spec(), cache_dir=tmp_path)
    engine.log_path = tmp_path / "child.log"
    engine.log_path.write_text(
        "INFO 11-23 20:22:14 [core.py:1] starting\n"
        "(Worker pid=5101) ERROR 11-23 20:22:31 [multiproc_executor.py:1063] "
        "RuntimeError: CPU Generator does not use offset\n"
        "(EngineCore pid=4981) ERROR 11-23 20:22:31 [core.py:1512] RuntimeError: Worker failed with error 'x'\n"
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above)\n"
    )
    assert engine._log_cause() == "RuntimeError: Worker failed with error 'x'"
    engine.log_path.write_text(
        "INFO shutting down\ncoe error: vLLM's engine process 42 exited unexpectedly\nINFO done\n"
    )
    assert engine._log_cause() == "coe error: vLLM's engine process 42 exited unexpectedly"
    engine.log_path.write_text("just\nsome lines\n\n")
    assert engine._log_cause() == "some lines"
