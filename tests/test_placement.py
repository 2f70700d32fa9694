"""Work-aware placement over devices: replicas of heavy experts, light ones pinned together under
the budget, every task served once, dependencies and memory held, and the executor running it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batching import ExpertSpec, FakeEngine, WarmEngines
from batching.executor import Executor, ProgressEvent
from batching.plan import ModelCost, Plan, make_plan
from common.errors import BadInput
from common.requests import Generation, Request
from common.tasks import Composed, Task


def spec(name: str, memory_mb: float = 1000) -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=memory_mb)


def ask(task_id: str, model: str, max_tokens: int = 100) -> Task:
    return Task(id=task_id, model=model, request=Request.user(task_id, f"{task_id}?", max_tokens=max_tokens))


def compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    assert set(inputs) == set(task.after) and all(g.ok for g in inputs.values())  # every input is in
    return Composed(request=Request.user(task.id, "combine"), used=tuple(sorted(inputs)))


def routed(routes: list[list[str]], aggregator: str | None) -> list[Task]:
    """One task per (question, chosen expert), then an aggregation per question if asked."""
    tasks = []
    for q, experts in enumerate(routes):
        ids = [f"q{q}/{e}" for e in experts]
        tasks += [ask(tid, e) for tid, e in zip(ids, experts, strict=True)]
        if aggregator is not None:
            tasks.append(Task(id=f"q{q}/final", model=aggregator, after=tuple(ids)))
    return tasks


def check(plan: Plan, tasks: list[Task], budget: float, sizes: Mapping[str, float]) -> None:
    """What any plan must hold: each task served once, memory, dependencies, replicas apart, times."""
    by_id = {t.id: t for t in tasks}
    served = Counter(tid for p in plan.phases for tid in p.tasks)
    assert set(served) == set(by_id) and set(served.values()) <= {1}  # nothing dropped, nothing twice
    placed = [(m, p.device) for p in plan.phases for m in p.models]
    assert len(placed) == len(set(placed))  # a model at most once per device: its replicas apart
    assert {m for m, _ in placed} == {t.model for t in tasks}
    if plan.devices == 1:
        assert len(placed) == len({t.model for t in tasks})  # one device: each model loaded once
    assert plan.predicted_loads == len(placed)
    where = plan.phase_of()
    ends: dict[int, float] = {}
    last_end = dict.fromkeys(range(plan.devices), 0.0)
    for phase in plan.phases:
        assert phase.device < plan.devices
        assert sum(sizes[m] for m in phase.models) <= budget and phase.memory_mb <= budget
        assert all(by_id[t].model in phase.models for t in phase.tasks)
        assert all(phase.requests[m] > 0 for m in phase.models)  # no load without work
        assert sum(phase.requests.values()) == len(phase.tasks)
        assert all(a < phase.index and plan.phases[a].device != phase.device for a in phase.after)
        position = {tid: i for i, tid in enumerate(phase.tasks)}
        for tid in phase.tasks:
            for dep in by_id[tid].after:
                source = plan.phases[where[dep]]
                if source.index == phase.index:
                    assert position[dep] < position[tid]
                elif source.device == phase.device:
                    assert source.index < phase.index
                else:
                    assert source.index in phase.after  # waits for the other device, wherever it ran
        waits = [ends[a] for a in phase.after] + [last_end[phase.device]]
        assert phase.predicted_start >= max(waits) - 0.01
        ends[phase.index] = last_end[phase.device] = phase.predicted_start + phase.predicted_seconds
    assert plan.predicted_seconds >= max(ends.values(), default=0.0) - 0.01


@st.composite
def skewed(draw):
    """Questions routed to k experts with a skewed distribution, an aggregator or not, random
    sizes, budgets, costs and device counts."""
    n = draw(st.integers(1, 10))
    experts = [f"e{i}" for i in range(n)]
    weight = [draw(st.integers(1, 50)) for _ in experts]
    k = draw(st.integers(1, min(3, n)))
    routes = []
    for _ in range(draw(st.integers(1, 40))):
        pool = list(experts)
        chosen = []
        for _ in range(k):
            pick = draw(st.integers(0, sum(weight[experts.index(e)] for e in pool) - 1))
            for e in pool:
                pick -= weight[experts.index(e)]
                if pick < 0:
                    chosen.append(e)
                    pool.remove(e)
                    break
        routes.append(chosen)
    aggregator = draw(st.sampled_from([None, "agg", "e0"]))
    names = experts + (["agg"] if aggregator == "agg" else [])
    sizes = {m: float(draw(st.integers(1, 8)) * 250) for m in names}
    budget = max(sizes.values()) * draw(st.sampled_from([1.0, 1.5, 2.5, 10.0]))
    costs = {
        m: ModelCost(
            load_seconds=draw(st.sampled_from([0.0, 1.0, 30.0, 120.0])),
            tokens_per_second=draw(st.sampled_from([5.0, 50.0, 1000.0])),
        )
        for m in names
    }
    return routed(routes, aggregator), sizes, budget, costs, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skewed())
def test_placement_serves_every_task_once_within_memory(workload):
    tasks, sizes, budget, costs, devices = workload
    specs = {m: spec(m, s) for m, s in sizes.items()}
    plan = make_plan(tasks, specs, budget_mb=budget, devices=devices, costs=costs)
    check(plan, tasks, budget, sizes)
    groups = make_plan(tasks, specs, budget_mb=budget, devices=devices, costs=costs, placement="groups")
    check(groups, tasks, budget, sizes)
    assert plan.predicted_seconds <= groups.predicted_seconds  # never predicted slower than today's
    if devices == 1:
        assert plan == groups  # one device: exactly today's plan


@st.composite
def graphs(draw):
    """Any task graph (models that need each other included), as in the planner's own tests."""
    sizes = {f"m{i}": float(draw(st.integers(1, 8)) * 250) for i in range(draw(st.integers(1, 6)))}
    budget = max(sizes.values()) * draw(st.sampled_from([1.0, 1.5, 2.5, 10.0]))
    tasks: list[Task] = []
    for i in range(draw(st.integers(1, 30))):
        model = draw(st.sampled_from(sorted(sizes)))
        inputs = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        if inputs:
            tasks.append(Task(id=f"t{i}", model=model, after=tuple(f"t{j}" for j in inputs)))
        else:
            tasks.append(ask(f"t{i}", model, draw(st.integers(1, 400))))
    return sizes, budget, tasks, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_placement_holds_for_any_task_graph(workload):
    sizes, budget, tasks, devices = workload
    specs = {m: spec(m, s) for m, s in sizes.items()}
    try:
        plan = make_plan(tasks, specs, budget_mb=budget, devices=devices)
    except BadInput as exc:  # only refusal allowed: models that need each other do not fit together
        assert "need each other's output" in str(exc)
        return
    check(plan, tasks, budget, sizes)


class Factory:
    def __init__(self) -> None:
        self.made: dict[str, list[FakeEngine]] = {}

    def __call__(self, spec: ExpertSpec) -> FakeEngine:
        engine = FakeEngine(spec)
        self.made.setdefault(spec.name, []).append(engine)
        return engine

    def loads(self, name: str) -> int:
        return sum(e.loads for e in self.made.get(name, []))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skewed())
def test_the_executor_runs_any_placement_once_per_task_and_replica(workload):
    tasks, sizes, budget, costs, devices = workload
    specs = {m: spec(m, s) for m, s in sizes.items()}
    plan = make_plan(tasks, specs, budget_mb=budget, devices=devices, costs=costs)
    factory = Factory()
    result = Executor(factory).run(plan, tasks, specs, compose)
    assert not result.failed and set(result.generations) == {t.id for t in tasks}
    generated = Counter(tid for engines in factory.made.values() for e in engines for b in e.batches for tid in b)
    assert generated == Counter(t.id for t in tasks)  # each task generated exactly once
    for model in {t.model for t in tasks}:
        replicas = [p for p in plan.phases if model in p.models]
        assert factory.loads(model) == len(replicas) == result.metrics.loads_per_model[model]
        served = {tid for e in factory.made[model] for b in e.batches for tid in b}
        assert served == {t.id for t in tasks if t.model == model}


def heavy_workload() -> tuple[list[Task], dict[str, ExpertSpec], dict[str, ModelCost]]:
    """One expert asked 120 questions, six asked 4 each, one aggregation per question."""
    routes = [["h"] for _ in range(120)] + [[f"l{i}"] for i in range(6) for _ in range(4)]
    tasks = routed(routes, "agg")
    specs = {m: spec(m, 1000) for m in ["h", *(f"l{i}" for i in range(6)), "agg"]}
    costs = {m: ModelCost(load_seconds=10, tokens_per_second=10, prompt_tokens_per_second=1e9) for m in specs}
    return tasks, specs, costs  # a task: 100 tokens at 10/s = 10 s


def test_replicas_split_a_heavy_experts_tasks_and_light_ones_are_pinned_together():
    tasks, specs, costs = heavy_workload()
    plan = make_plan(tasks, specs, budget_mb=3000, devices=4, costs=costs)
    check(plan, tasks, 3000, dict.fromkeys(specs, 1000.0))
    heavy = [p for p in plan.phases if "h" in p.models]
    assert len(heavy) >= 3 and len({p.device for p in heavy}) == len(heavy)  # replicas on different devices
    shares = [{t for t in p.tasks if t.endswith("/h")} for p in heavy]
    assert sum(map(len, shares)) == 120 and set().union(*shares) == {f"q{q}/h" for q in range(120)}
    assert max(map(len, shares)) - min(map(len, shares)) <= 40  # split by expected work
    light = [p for p in plan.phases if any(m.startswith("l") for m in p.models)]
    assert all(sum(m == f"l{i}" for p in plan.phases for m in p.models) == 1 for i in range(6))  # pinned
    assert any(sum(m.startswith("l") for m in p.models) >= 2 for p in light)  # co-resident under the budget
    bound = make_plan(tasks, specs, budget_mb=3000, costs=costs).predicted_seconds / 4  # all work, each load once
    assert plan.predicted_seconds <= 1.1 * bound
    today = make_plan(tasks, specs, budget_mb=3000, devices=4, costs=costs, placement="groups")
    assert today.predicted_loads == 8 and today.predicted_seconds >= 1200  # the heavy expert alone
    assert plan.predicted_seconds < 0.7 * today.predicted_seconds


def test_aggregation_replicas_wait_for_their_inputs_on_every_device():
    tasks, specs, costs = heavy_workload()
    plan = make_plan(tasks, specs, budget_mb=3000, devices=4, costs=costs)
    finals = [p for p in plan.phases if "agg" in p.models]
    assert len(finals) >= 2  # the aggregation stage is split as well
    where = plan.phase_of()
    for phase in finals:
        inputs = {where[d] for t in tasks if t.id in phase.tasks for d in t.after}
        assert {p for p in inputs if plan.phases[p].device != phase.device} <= set(phase.after)
    order: list[str] = []

    def recording(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        order.append(task.id)
        return compose(task, inputs)

    factory = Factory()
    result = Executor(factory).run(plan, tasks, specs, recording)
    assert not result.failed and sorted(order) == sorted(t.id for t in tasks if t.after)
    assert factory.loads("h") == sum("h" in p.models for p in plan.phases)


def test_one_device_places_as_today():
    tasks, specs, costs = heavy_workload()
    one = make_plan(tasks, specs, budget_mb=3000, costs=costs)
    assert one == make_plan(tasks, specs, budget_mb=3000, costs=costs, placement="groups")
    assert one.predicted_loads == len(specs)


def test_measured_output_tokens_drive_the_expected_work():
    tasks, specs, costs = heavy_workload()
    capped = make_plan(tasks, specs, budget_mb=3000, costs=costs)
    short = make_plan(tasks, specs, budget_mb=3000, costs=costs, output_tokens={"h": 10})
    assert short.predicted_seconds == pytest.approx(capped.predicted_seconds - 120 * 9, abs=0.01)
    longer = make_plan(tasks, specs, budget_mb=3000, costs=costs, output_tokens={"h": 5000})
    assert longer.predicted_seconds == capped.predicted_seconds  # never above the request's cap


def test_unknown_placement_is_refused():
    tasks, specs, _ = heavy_workload()
    with pytest.raises(BadInput, match="placement must be"):
        make_plan(tasks, specs, budget_mb=3000, devices=2, placement="random")  # type: ignore[arg-type]


def test_a_plan_serving_a_task_twice_is_refused():
    tasks, specs, costs = heavy_workload()
    plan = make_plan(tasks, specs, budget_mb=3000, devices=4, costs=costs)
    first = plan.phases[0]
    other = next(p for p in plan.phases if p.device != first.device and first.models[0] in p.models)
    doubled = other.model_copy(update={"tasks": (*other.tasks, first.tasks[0])})
    bad = plan.model_copy(update={"phases": tuple(doubled if p is other else p for p in plan.phases)})
    with pytest.raises(BadInput, match="more than once"):
        Executor(Factory()).run(bad, tasks, specs, compose)


def test_replicas_report_progress_apart_and_a_warm_session_keeps_one_of_them():
    tasks, specs, costs = heavy_workload()
    plan = make_plan(tasks, specs, budget_mb=3000, devices=4, costs=costs)
    events: list[ProgressEvent] = []
    factory = Factory()
    warm = WarmEngines(100_000, dict.fromkeys(specs, 1000.0))
    Executor(factory, progress=events.append, warm=warm).run(plan, tasks, specs, compose)
    for phase in plan.phases:
        for model in phase.models:
            mine = [e for e in events if e.kind == "generated" and e.phase == phase.index and e.model == model]
            done = [e.done for e in mine]
            assert done == sorted(done) and done[-1] == phase.requests[model] and mine[-1].total == done[-1]
    loaded = [e for engines in factory.made.values() for e in engines if e.loaded]
    assert sorted(e.spec.name for e in loaded) == sorted(warm.names) == sorted(specs)  # one kept per model
    warm.close()
    assert not any(e.loaded for engines in factory.made.values() for e in engines)
