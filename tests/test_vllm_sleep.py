"""The vLLM engine's sleep mode without vLLM: the options it starts with, the parent's sleep and wake
over a real pipe to a stand-in child running the child's own ``switch`` on a fake ``LLM``, and the
CPU build's answer (it cannot sleep, says so once, and is unloaded instead)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from pathlib import Path

import pytest

from batching.engines import FakeEngine, _vllm_sleep
from batching.engines._vllm_protocol import ErrorKind, Failed, Ready, Sleep, Stop, Switched, Wake
from batching.engines._vllm_sleep import switch
from batching.engines.vllm_engine import VLLMEngine
from batching.engines.vllm_options import cpu_build, engine_args
from batching.spec import ExpertSpec, VLLMSource
from batching.warm import WarmEngines
from common.errors import EngineError
from common.requests import Request


class FakeLLM:
    """Records what the child asked of ``vllm.LLM``; ``wake_up`` returns ``awake`` or raises ``fail``."""

    def __init__(self, awake: bool = True, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.awake = awake
        self.fail = fail

    def sleep(self, level: int = 1) -> None:
        self.calls.append(f"sleep {level}")
        if self.fail is not None:
            raise self.fail

    def wake_up(self) -> bool:
        self.calls.append("wake_up")
        return self.awake


class StandIn:
    """A child process as ``VLLMEngine`` sees it: alive until killed or stopped."""

    pid = None
    exitcode = None

    def __init__(self) -> None:
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.alive = False

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def spec(name: str = "m") -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=60)


def engine_with_child(llm: FakeLLM, sleep_mode: bool = True, device: str = "cuda") -> tuple[VLLMEngine, StandIn]:
    """A VLLMEngine 'loaded' with a stand-in child answering over a real pipe as the worker does."""
    engine = VLLMEngine(spec(), cache_dir=Path("."), switch_timeout_s=10)
    parent, child = multiprocessing.Pipe()
    process = StandIn()

    def serve() -> None:
        while True:
            try:
                message = child.recv()
            except (EOFError, OSError):
                return
            if isinstance(message, Stop):
                process.alive = False
                return
            if isinstance(message, Sleep | Wake):
                child.send(switch(llm, message, sleep_mode))

    threading.Thread(target=serve, daemon=True).start()
    engine._process, engine._conn = process, parent  # type: ignore[assignment]
    engine._ready = Ready(model="x", device=device, sleep_mode=sleep_mode)
    return engine, process


def test_gpu_engines_start_with_sleep_mode_and_cpu_ones_never() -> None:
    source = VLLMSource(model="org/model")
    gpu = engine_args(source, "org/model", cpu=False, sleep_mode=True)
    assert gpu.llm_kwargs()["enable_sleep_mode"] is True
    assert "--enable-sleep-mode" in gpu.server_flags(served_name="m", host="h", port=1)
    assert "enable_sleep_mode" not in engine_args(source, "org/model", cpu=False).llm_kwargs()
    assert "enable_sleep_mode" not in engine_args(source, "m", cpu=True, sleep_mode=True).llm_kwargs()


def test_the_child_switches_its_llm_and_reports_failures() -> None:
    llm = FakeLLM()
    assert switch(llm, Sleep(level=1), enabled=True) == Switched(sleeping=True)
    assert switch(llm, Wake(), enabled=True) == Switched(sleeping=False)
    assert llm.calls == ["sleep 1", "wake_up"]
    refused = switch(llm, Sleep(), enabled=False)
    assert isinstance(refused, Failed) and refused.kind is ErrorKind.SLEEP and "without" in refused.message
    assert llm.calls == ["sleep 1", "wake_up"]  # not asked
    half = switch(FakeLLM(awake=False), Wake(), enabled=True)
    assert isinstance(half, Failed) and "asleep" in half.message
    broken = switch(FakeLLM(fail=RuntimeError("CUDA error: out of memory")), Sleep(), enabled=True)
    assert isinstance(broken, Failed) and broken.message == "RuntimeError: CUDA error: out of memory"


def test_the_engine_sleeps_and_wakes_through_its_child() -> None:
    llm = FakeLLM()
    engine, _ = engine_with_child(llm)
    assert engine.can_sleep and not engine.sleeping
    assert engine.sleep() and engine.sleeping and engine.loaded
    assert engine.sleep()  # already asleep: nothing sent
    with pytest.raises(EngineError, match="asleep"):
        engine.generate([Request.user("a", "hi")])
    engine.wake()
    engine.wake()  # awake: nothing sent
    assert not engine.sleeping and engine.loaded and llm.calls == ["sleep 1", "wake_up"]
    engine.unload()
    assert not engine.loaded and not engine.sleeping


def test_a_failed_wake_stops_the_child() -> None:
    engine, process = engine_with_child(FakeLLM(awake=False))
    assert engine.sleep()
    with pytest.raises(EngineError, match="wake of 'm' failed: vLLM's wake_up left part of the engine asleep"):
        engine.wake()
    assert not process.alive and not engine.loaded and not engine.sleeping


def test_a_failed_sleep_stops_the_child_and_a_warm_session_unloads_it() -> None:
    engine, process = engine_with_child(FakeLLM(fail=RuntimeError("boom")))
    warm = WarmEngines(100, {"m": 60, "other": 60})
    assert warm.give_back(engine)
    warm.make_room(60, keep=["other"])
    assert not process.alive and not engine.loaded and warm.sleeping == [] and warm.counts.failed_sleeps == 1


def test_on_a_cpu_the_engine_cannot_sleep_says_so_once_and_is_unloaded(caplog, monkeypatch) -> None:
    monkeypatch.setattr(_vllm_sleep, "_told", set())
    llm = FakeLLM()
    with caplog.at_level(logging.INFO, logger="batching.engines.vllm_engine"):
        engines = [engine_with_child(llm, sleep_mode=False, device="cpu") for _ in range(2)]
        for engine, _ in engines:
            engine._say_if_no_sleep_mode()  # what load() does once the child is ready
    told = [r.getMessage() for r in caplog.records if "no sleep mode" in r.getMessage()]
    assert told == ["vLLM has no sleep mode on cpu: a model that must make room is unloaded and loaded again instead"]
    engine, process = engines[0]
    assert not engine.can_sleep and not engine.sleep() and not engine.sleeping and engine.loaded
    warm = WarmEngines(100, {"m": 60, "other": 60})
    assert warm.give_back(engine)
    warm.make_room(60, keep=["other"])
    assert not process.alive and not engine.loaded and llm.calls == [] and warm.counts.sleeps == 0
    engines[1][0].unload()


def test_an_unloaded_engine_cannot_sleep() -> None:
    engine = VLLMEngine(spec(), cache_dir=Path("."))
    assert not engine.can_sleep and not engine.sleeping and not engine.sleep()
    engine.wake()  # nothing to wake


def test_the_sleep_benchmark_measures_swaps_with_engines_that_sleep() -> None:
    from benchmarks import sleep as bench

    engines = {name: FakeEngine(spec(name), sleeps=True) for name in ("a", "b")}
    result = bench.measure(engines, lambda name: [Request.user(f"{name}-0", "hi")], rounds=2, gpu_used=lambda: 1.0)
    for engine in engines.values():
        assert (engine.loads, engine.sleeps, engine.wakes, engine.loaded) == (2, 3, 3, False)
    row = result["models"]["a"]
    assert (row["sleeps"], row["wakes"], row["gpu_used_asleep_mb"]) == (3, 2, 1.0)
    swap = result["swaps"]["a->b"]
    b = result["models"]["b"]
    assert swap["swap_sleep_s"] == pytest.approx(row["sleep_s"] + b["wake_s"], abs=0.002)
    assert swap["swap_cold_s"] == pytest.approx(row["unload_s"] + b["reload_s"], abs=0.002)
    with pytest.raises(SystemExit, match="without sleep mode"):
        bench.measure({"a": FakeEngine(spec("a"))}, lambda name: [], rounds=1)


@pytest.mark.skipif(not cpu_build(), reason="a GPU build of vLLM has sleep mode")
def test_the_sleep_benchmark_measures_nothing_on_this_cpu(tmp_path, capsys) -> None:
    from benchmarks import sleep as bench

    out = tmp_path / "sleep.json"
    assert bench.main(["--write", "--out", str(out)]) == 0
    assert "sleep mode unavailable here" in capsys.readouterr().out and not out.exists()
