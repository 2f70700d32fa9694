"""The vLLM plugin that makes vLLM's processes nap instead of spin while they wait on each other
(batching/engines/_vllm_plugin.py): declared where vLLM finds it, acting only when asked, once.
Here on a stand-in for vLLM's queue-waiting class; the real tier checks vLLM's engine process
(tests/real/test_vllm_engine.py)."""

from __future__ import annotations

import sys
import time
import tomllib
import types
from pathlib import Path

import pytest

from batching.engines import _vllm_plugin

MODULE = "vllm.distributed.device_communicators.shm_broadcast"


class Condition:
    """vLLM's ``SpinCondition`` as far as the plugin uses it."""

    def __init__(self, waited_s: float) -> None:
        self.last_read = time.monotonic() - waited_s
        self.busy_loop_s = 1.0
        self.polls: list[int | None] = []

    def wait(self, timeout_ms: int | None = None) -> None:
        self.polls.append(timeout_ms)


@pytest.fixture
def shm(monkeypatch: pytest.MonkeyPatch) -> type[Condition]:
    module = types.ModuleType(MODULE)
    cls = type("SpinCondition", (Condition,), {})
    module.SpinCondition = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, MODULE, module)
    for parent in ("vllm", "vllm.distributed", "vllm.distributed.device_communicators"):
        monkeypatch.setitem(sys.modules, parent, sys.modules.get(parent) or types.ModuleType(parent))
    monkeypatch.setattr(sys.modules["vllm.distributed.device_communicators"], "shm_broadcast", module, raising=False)
    return cls


def test_vllm_finds_the_plugin_in_the_project_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    plugins = project["project"]["entry-points"]["vllm.general_plugins"]
    assert plugins == {"coe_idle_waits": "batching.engines._vllm_plugin:idle_waits"}


def test_without_the_variable_vllm_is_left_as_it_ships(shm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_vllm_plugin.ENV, raising=False)
    original = shm.wait
    _vllm_plugin.idle_waits()
    assert shm.wait is original


def test_a_waiting_reader_naps_then_polls_as_vllm_does(shm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_vllm_plugin.ENV, "1")
    naps: list[float] = []
    monkeypatch.setattr(_vllm_plugin.time, "sleep", naps.append)
    _vllm_plugin.idle_waits()
    _vllm_plugin.idle_waits()  # loaded twice in one process: wrapped once
    fresh, waiting, idle = shm(0.0), shm(0.004), shm(2.0)
    fresh.wait(5000)
    waiting.wait(5000)
    idle.wait(5000)
    assert naps[0] == _vllm_plugin.SHORTEST_NAP_S  # just read: look again very soon
    assert naps[1] == pytest.approx(0.004 / 16, rel=0.2)  # a sixteenth of the wait so far
    assert len(naps) == 2 and fresh.polls == [] and waiting.polls == []
    assert idle.polls == [5000]  # past vLLM's busy second: its own socket poll, as it ships
    long = shm(0.9)
    long.wait()
    assert naps[2] == _vllm_plugin.LONGEST_NAP_S
