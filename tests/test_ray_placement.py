"""The Ray executor's parts that need no cluster: the actor's body (``EngineHost``) driven
directly, and what a plan's devices and models ask of a GPU cluster."""

from __future__ import annotations

import os

import pytest
import ray_fakes
from ray_fakes import spec

from batching import ExpertSpec
from batching.plan import make_plan
from batching.ray_cluster import code_path, device_gpus, gpu_shares
from batching.ray_host import EngineHost
from common.errors import EngineError
from common.requests import Request
from common.tasks import Task


def vllm(name: str, memory_mb: float | None = 1000, tp: int = 1) -> ExpertSpec:
    source = {"kind": "vllm", "model": "packaged:x", "tensor_parallel_size": tp}
    return ExpertSpec(name=name, source=source, memory_mb=memory_mb)


def replay(name: str) -> ExpertSpec:
    source = {"kind": "replay", "path": "r.jsonl", "model": name, "benchmark": "mmlu_pro"}
    return ExpertSpec(name=name, source=source)


@pytest.mark.parametrize(
    ("specs", "gpus", "shares"),
    [
        ([vllm("a", tp=2)], 2, {"a": 2.0}),  # alone: the whole device
        ([vllm("a", 3000), vllm("b", 1000)], 1, {"a": 0.75, "b": 0.25}),  # by declared memory
        ([vllm("a", 3000), vllm("b", None)], 1, {"a": 0.5, "b": 0.5}),  # evenly when one declares none
        ([vllm("a", 1000), vllm("b", 1000), vllm("c", 1000)], 1, {"a": 0.3333, "b": 0.3333, "c": 0.3333}),
        ([vllm("a", 3000), vllm("b", 1000)], 4, {"a": 3.0, "b": 1.0}),  # whole GPUs from one up
        ([vllm("a"), replay("r")], 1, {"a": 1.0}),  # a replay model asks for no GPU
    ],
)
def test_each_local_model_asks_for_its_share_of_its_device(specs, gpus, shares):
    assert gpu_shares([s.name for s in specs], {s.name: s for s in specs}, gpus) == shares


def test_a_device_holds_the_gpus_of_its_widest_model():
    specs = {"a": vllm("a", 1000), "b": vllm("b", 1000, tp=2), "r": replay("r")}
    tasks = [Task(id=f"t{m}", model=m, request=Request.user(f"t{m}", "hi")) for m in specs]
    plan = make_plan(tasks, specs, budget_mb=1000, devices=2)
    by_device = {p.device: set(p.models) for p in plan.phases}
    wide = next(d for d, models in by_device.items() if "b" in models)
    assert device_gpus(plan, specs)[wide] == 2
    assert all(n == 1 for d, n in device_gpus(plan, specs).items() if d != wide)


def drain(host: EngineHost, requests: list[Request], stream: bool = False) -> list[tuple]:
    return [event for batch in host.generate(requests, stream) for event in batch]


def test_the_actor_body_streams_results_then_its_end():
    host = EngineHost(ray_fakes.fake, spec("a"))
    where, error = host.load()
    assert error is None and where["pid"] and host.loaded()
    requests = [Request.user(f"r{i}", f"question {i}?") for i in range(3)]
    events = drain(host, requests, stream=True)
    results = [e for e in events if e[0] == "result"]
    assert [i for _, i, _ in results] == [0, 1, 2] and events[-1] == ("end", True, None)
    streamed = {}
    for kind, index, text in events:
        if kind == "delta":
            streamed[index] = streamed.get(index, "") + text
    assert streamed == {i: g.text for _, i, g in results}
    assert not any(e[0] == "delta" for e in drain(host, requests))  # no stream unless asked


def test_the_engine_s_error_travels_as_a_value_after_the_results_before_it():
    host = EngineHost(ray_fakes.failing, spec("a"))
    host.load()
    events = drain(host, [Request.user(f"r{i}", f"question {i}?") for i in range(4)])
    assert [e[1] for e in events if e[0] == "result"] == [0, 1]
    kind, loaded, error = events[-1]
    assert kind == "end" and loaded is True and isinstance(error, EngineError) and "failed on request" in str(error)


def test_a_factory_that_breaks_is_an_engine_error_not_a_crash():
    def broken(spec, cpus=None):
        raise RuntimeError("no such device")

    where, error = EngineHost(broken, spec("a")).load()
    assert isinstance(error, EngineError) and "RuntimeError: no such device" in str(error)
    events = drain(EngineHost(broken, spec("a")), [Request.user("r", "q?")])
    assert events[-1][0] == "end" and "before load()" in str(events[-1][2])


def test_workers_import_the_named_checkout_first(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert code_path(tmp_path) == {"env_vars": {"PYTHONPATH": f"{tmp_path}{os.pathsep}/elsewhere"}}
    assert code_path(None) == {}
