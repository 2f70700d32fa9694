"""Cores for local engines, wave by wave: models generating side by side split the cores, a model
generating alone gets every core (an idle co-resident model holds none), a batch that ends hands
its cores to the one still running, and a warm session moves a kept engine instead of reloading
it. The real tier moves a vLLM worker (tests/real/test_vllm_engine.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from batching import ExpertSpec, FakeEngine
from batching.engines.base import can_bind
from batching.executor import Executor
from batching.plan import make_plan
from batching.warm import WarmEngines
from common.errors import EngineError
from common.requests import Generation, Request
from common.tasks import Composed, Task

CORES = (0, 1, 2, 3)


def spec(name: str) -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=1000)


SPECS = {n: spec(n) for n in ("a", "b")}


class Seen(FakeEngine):
    """A movable fake that notes the cores each batch ran on."""

    def __init__(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None, bind_fails: bool = False) -> None:
        super().__init__(spec, cpus=cpus, binds=True)
        self.bind_fails = bind_fails
        self.ran_on: list[tuple[tuple[int, ...] | None, list[str]]] = []

    def bind(self, cpus: tuple[int, ...]) -> bool:
        if self.bind_fails and self.loaded:
            raise EngineError("the worker would not move")
        return super().bind(cpus)

    def generate(self, requests: Sequence[Request], on_result=None, on_delta=None) -> list[Generation]:
        self.ran_on.append((self.cpus, [r.id for r in requests]))
        return super().generate(requests, on_result, on_delta)


class Waits(Seen):
    """A fake whose batch runs until it is moved to a lone model's cores (or 5 s pass), as a long batch would."""

    def generate(self, requests: Sequence[Request], on_result=None, on_delta=None) -> list[Generation]:
        started = self.cpus
        deadline = time.monotonic() + 5
        while self.cpus != CORES and time.monotonic() < deadline:
            time.sleep(0.01)
        self.moved_during = (started, self.cpus)
        return super().generate(requests, on_result, on_delta)


class Factory:
    def __init__(self, slow: str | None = None, **options) -> None:
        self.slow = slow  # the model whose batches run until it is moved
        self.options = options
        self.made: dict[str, list[Seen]] = {}

    def __call__(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Seen:
        engine = (Waits if spec.name == self.slow else Seen)(spec, cpus=cpus, **self.options)
        self.made.setdefault(spec.name, []).append(engine)
        return engine


def question(q: int, experts: Sequence[str] = ("a", "b"), aggregator: str = "a") -> list[Task]:
    """One question for each expert, then the aggregator (itself one of the experts, as in the
    default pool) on their answers."""
    asked = [Task(id=f"q{q}/{e}", model=e, request=Request.user(f"q{q}/{e}", f"question {q}?")) for e in experts]
    return [*asked, Task(id=f"q{q}/final", model=aggregator, after=tuple(t.id for t in asked))]


def compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    text = "Combine: " + " | ".join(g.text for g in inputs.values())
    return Composed(request=Request.user(task.id, text), used=tuple(inputs))


def run(executor: Executor, tasks: list[Task]):
    return executor.run(make_plan(tasks, SPECS, budget_mb=4000), tasks, SPECS, compose)


def test_experts_split_the_cores_and_the_lone_aggregator_gets_them_all():
    factory = Factory()
    result = run(Executor(factory, cores=CORES), question(0))
    assert not result.failed
    a, b = factory.made["a"][0], factory.made["b"][0]
    assert a.ran_on == [((0, 1), ["q0/a"]), (CORES, ["q0/final"])]  # the experts' wave, then alone
    assert b.ran_on == [((2, 3), ["q0/b"])]  # b sat the aggregation out: it held no core then
    assert a.loads == b.loads == 1  # moved, never reloaded


def test_a_batch_that_ends_hands_its_cores_to_the_one_still_running():
    factory = Factory(slow="b")
    result = run(Executor(factory, cores=CORES), question(0))
    assert not result.failed
    b = factory.made["b"][0]
    assert b.moved_during == ((2, 3), CORES)  # began on its share; a's batch ended and b got a lone one's


def test_a_lone_model_generates_on_every_core():
    factory = Factory()
    tasks = [Task(id="x", model="b", request=Request.user("x", "hi"))]
    run(Executor(factory, cores=CORES), tasks)
    assert factory.made["b"][0].ran_on == [(CORES, ["x"])]  # made with no cores named, moved before it ran


def test_on_two_cores_the_lone_aggregator_takes_both():
    factory = Factory()
    run(Executor(factory, cores=(0, 1)), question(0))
    a, b = factory.made["a"][0], factory.made["b"][0]
    assert a.ran_on == [((0,), ["q0/a"]), ((0, 1), ["q0/final"])] and b.ran_on == [((1,), ["q0/b"])]
    assert a.binds == [(0, 1)] and b.binds == []  # a moved to both for the aggregation; b loaded on its share


def test_a_warm_session_moves_a_kept_engine_instead_of_reloading_it():
    factory = Factory()
    warm = WarmEngines(4000, {"a": 1000, "b": 1000})
    executor = Executor(factory, warm=warm, cores=CORES)
    run(executor, question(0))
    run(executor, [Task(id="alone", model="a", request=Request.user("alone", "hi"))])  # a alone this time
    run(executor, question(1))  # both again
    a = factory.made["a"]
    assert len(a) == 1 and a[0].loads == 1
    assert [cpus for cpus, _ in a[0].ran_on] == [(0, 1), CORES, CORES, (0, 1), CORES]
    assert [cpus for cpus, _ in factory.made["b"][0].ran_on] == [(2, 3), (2, 3)]
    warm.close()


def test_no_cores_given_means_no_moves():
    factory = Factory()
    run(Executor(factory), question(0))  # a GPU, or an engine factory that takes no cores
    assert all(e.binds == [] and e.cpus is None for made in factory.made.values() for e in made)


def test_an_engine_that_will_not_move_generates_where_it_is(caplog):
    factory = Factory(bind_fails=True)
    with caplog.at_level(logging.WARNING, logger="batching.executor"):
        result = run(Executor(factory, cores=CORES), question(0))
    assert not result.failed
    assert factory.made["a"][0].ran_on[-1] == ((0, 1), ["q0/final"])  # stayed on its share
    assert "a: could not move it to cores [0, 1, 2, 3]" in caplog.text


def test_warm_sessions_keep_movable_engines_bound_elsewhere():
    engine = Seen(spec("a"), cpus=(0,))
    engine.load()
    warm = WarmEngines(4000, {"a": 1000})
    assert can_bind(engine) and warm.give_back(engine)
    assert warm.take(spec("a"), (1,)) is engine and engine.loaded  # the executor moves it before its wave
    fixed = FakeEngine(spec("a"), cpus=(0,))  # cannot move: reloading is the only way to other cores
    fixed.load()
    warm.give_back(fixed)
    assert not can_bind(fixed) and warm.take(spec("a"), (1,)) is None and not fixed.loaded
