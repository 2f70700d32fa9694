"""The batch planner: one load per model, co-residence under the budget, dependency order, devices."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batching import ExpertSpec
from batching.plan import ModelCost, Plan, make_plan
from common.errors import BadInput, ConfigError, NotFound
from common.requests import Request
from common.tasks import Task


def spec(name: str, memory_mb: float | None = 1000, kind: str = "vllm") -> ExpertSpec:
    source = {"kind": "vllm", "model": "packaged:smollm2-135m-instruct"}
    if kind == "replay":
        source = {"kind": "replay", "path": "/nowhere.jsonl", "model": name, "benchmark": "mmlu_pro"}
    return ExpertSpec(name=name, source=source, memory_mb=memory_mb)


def ask(task_id: str, model: str, text: str = "What is two plus two?") -> Task:
    return Task(id=task_id, model=model, request=Request.user(task_id, text, question_id=task_id))


def moe_tasks(questions: int, experts: list[str], aggregator: str, k: int = 2) -> list[Task]:
    """k experts per question (rotating), then one aggregation task per question."""
    tasks = []
    for q in range(questions):
        chosen = [experts[(q + i) % len(experts)] for i in range(k)]
        ids = []
        for name in chosen:
            tasks.append(ask(f"q{q}/{name}", name, f"question {q}"))
            ids.append(f"q{q}/{name}")
        tasks.append(Task(id=f"q{q}/final", model=aggregator, after=tuple(ids)))
    return tasks


def check_plan(plan: Plan, tasks: list[Task], budget: float, sizes: dict[str, float]) -> None:
    """Every property a plan must have, whatever the input."""
    by_id = {t.id: t for t in tasks}
    loads = [m for p in plan.phases for m in p.models]
    assert len(loads) == len(set(loads)) == len({t.model for t in tasks})  # each model once
    assert plan.predicted_loads == len(loads)
    served = [tid for p in plan.phases for tid in p.tasks]
    assert sorted(served) == sorted(by_id)  # each task exactly once
    where = plan.phase_of()
    for phase in plan.phases:
        assert sum(sizes[m] for m in phase.models) <= budget
        assert sum(phase.requests.values()) == len(phase.tasks)
        assert all(by_id[t].model in phase.models for t in phase.tasks)
        assert all(a < phase.index and plan.phases[a].device != phase.device for a in phase.after)
        position = {tid: i for i, tid in enumerate(phase.tasks)}
        for tid in phase.tasks:
            for dep in by_id[tid].after:
                source = plan.phases[where[dep]]
                if source.index == phase.index:
                    assert position[dep] < position[tid]  # inputs first within a phase
                elif source.device == phase.device:
                    assert source.index < phase.index
                else:
                    assert source.index in phase.after  # waits for the other device
    assert plan.predicted_seconds >= max((p.predicted_seconds for p in plan.phases), default=0.0)


def test_one_load_per_model_and_aggregator_last():
    specs = {n: spec(n) for n in ("a", "b", "c", "agg")}
    tasks = moe_tasks(9, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, specs, budget_mb=1000)  # one model at a time
    check_plan(plan, tasks, 1000, {n: 1000 for n in specs})
    assert [p.models for p in plan.phases][-1] == ("agg",)
    assert plan.predicted_loads == 4
    assert plan.phases[-1].composed == {"agg": 9}


def test_aggregator_that_is_also_an_expert_loads_once_and_last():
    specs = {n: spec(n) for n in ("a", "b", "c")}
    tasks = moe_tasks(6, ["a", "b", "c"], "a")
    plan = make_plan(tasks, specs, budget_mb=1000)
    check_plan(plan, tasks, 1000, {n: 1000 for n in specs})
    last = plan.phases[-1]
    assert last.models == ("a",)
    assert last.requests == {"a": 4 + 6} and last.composed == {"a": 6}
    assert plan.aggregators == ("a",)


def test_models_that_fit_together_share_a_phase():
    specs = {"a": spec("a", 1000), "b": spec("b", 1500), "c": spec("c", 2500), "agg": spec("agg", 500)}
    tasks = moe_tasks(8, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, specs, budget_mb=6000)
    assert len(plan.phases) == 1 and set(plan.phases[0].models) == set(specs)
    assert plan.phases[0].models[-1] == "agg"
    tight = make_plan(tasks, specs, budget_mb=3000)
    check_plan(tight, tasks, 3000, {m: s.memory_mb for m, s in specs.items()})
    assert 1 < len(tight.phases) < 4


def test_measured_footprints_override_declared_ones():
    specs = {"a": spec("a", 5000), "b": spec("b", 5000)}
    tasks = [ask("1", "a"), ask("2", "b")]
    assert len(make_plan(tasks, specs, budget_mb=6000).phases) == 2
    plan = make_plan(tasks, specs, budget_mb=6000, footprints={"a": 2000, "b": 2500})
    assert len(plan.phases) == 1 and plan.phases[0].memory_mb == 4500


def test_replay_models_hold_no_memory_but_vllm_ones_must_declare_it():
    specs = {"r": spec("r", None, kind="replay"), "v": spec("v", None)}
    assert make_plan([ask("1", "r")], specs, budget_mb=1).phases[0].memory_mb == 0
    with pytest.raises(ConfigError, match="'v' has no memory footprint"):
        make_plan([ask("1", "r"), ask("2", "v")], specs, budget_mb=1000)


def test_model_larger_than_the_budget_is_named():
    specs = {"small": spec("small", 500), "huge": spec("huge", 9000)}
    with pytest.raises(BadInput, match=r"model 'huge' needs 9000 MB, more than the memory budget of 8000 MB"):
        make_plan([ask("1", "small"), ask("2", "huge")], specs, budget_mb=8000)


@pytest.mark.parametrize(
    ("tasks", "error", "message"),
    [
        ([ask("1", "a"), ask("1", "b")], BadInput, "task id '1' appears twice"),
        ([ask("1", "a"), Task(id="2", model="b", after=("9",))], BadInput, "'2' waits on unknown task '9'"),
        ([Task(id="1", model="a", after=("2",)), Task(id="2", model="b", after=("1",))], BadInput, "cycle"),
        ([Task(id="1", model="a", after=("1",))], BadInput, "waits on itself"),
        ([ask("1", "nobody")], NotFound, "unknown model 'nobody'"),
    ],
)
def test_bad_task_graphs_get_clear_errors(tasks, error, message):
    specs = {"a": spec("a"), "b": spec("b")}
    with pytest.raises(error, match=message):
        make_plan(tasks, specs, budget_mb=4000)


def test_bad_budget_and_devices():
    with pytest.raises(BadInput, match="memory budget"):
        make_plan([ask("1", "a")], {"a": spec("a")}, budget_mb=0)
    with pytest.raises(BadInput, match="devices"):
        make_plan([ask("1", "a")], {"a": spec("a")}, budget_mb=4000, devices=0)
    with pytest.raises(NotFound, match="aggregator 'zz'"):
        make_plan([ask("1", "a")], {"a": spec("a")}, budget_mb=4000, aggregators={"zz"})


def test_models_needing_each_other_are_resident_together_or_refused():
    # a's second task needs b's answer, b's task needs a's first: only co-residence loads each once
    tasks = [
        ask("a1", "a"),
        Task(id="b1", model="b", after=("a1",)),
        Task(id="a2", model="a", after=("b1",)),
        ask("c1", "c"),
    ]
    specs = {n: spec(n, 1000) for n in "abc"}
    plan = make_plan(tasks, specs, budget_mb=2000)
    check_plan(plan, tasks, 2000, {n: 1000 for n in "abc"})
    together = next(p for p in plan.phases if "a" in p.models)
    assert set(together.models) == {"a", "b"} and together.tasks == ("a1", "b1", "a2")
    with pytest.raises(BadInput, match=r"models a, b need each other's output .* 2000 MB"):
        make_plan(tasks, specs, budget_mb=1500)


def test_devices_shorten_the_makespan_lpt():
    specs = {n: spec(n, 1000) for n in ("a", "b", "c", "d", "agg")}
    costs = {
        n: ModelCost(load_seconds=s, tokens_per_second=1e9, prompt_tokens_per_second=1e9)
        for n, s in {"a": 40, "b": 30, "c": 20, "d": 10, "agg": 5}.items()
    }
    tasks = moe_tasks(8, ["a", "b", "c", "d"], "agg")
    one = make_plan(tasks, specs, budget_mb=1000, costs=costs)
    two = make_plan(tasks, specs, budget_mb=1000, devices=2, costs=costs)
    check_plan(two, tasks, 1000, {n: 1000 for n in specs})
    assert one.predicted_seconds == pytest.approx(105, abs=0.01)
    # LPT: a (40) | b (30), then c joins b's device (free at 30), d joins a's (free at 40): 50 + agg
    assert two.predicted_seconds == pytest.approx(55, abs=0.01)
    assert {p.device for p in two.phases} == {0, 1}
    final = two.phases[-1]
    assert final.models == ("agg",) and final.after  # waits for the other device


def test_render_and_json():
    specs = {n: spec(n) for n in ("a", "b", "agg")}
    plan = make_plan(moe_tasks(5, ["a", "b"], "agg"), specs, budget_mb=1000)
    text = plan.render()
    assert "3 load(s)" in text and "agg* (0 + 5 agg)" in text and "a (5)" in text
    data = json.loads(plan.to_json())
    assert data["predicted_loads"] == 3 and len(data["phases"]) == 3
    assert Plan.model_validate_json(plan.to_json()) == plan


def test_empty_task_list_is_an_empty_plan():
    plan = make_plan([], {}, budget_mb=1000)
    assert plan.phases == () and plan.predicted_loads == 0 and plan.predicted_seconds == 0


@st.composite
def workloads(draw):
    n_models = draw(st.integers(1, 6))
    sizes = {f"m{i}": float(draw(st.integers(1, 8)) * 250) for i in range(n_models)}
    budget = max(sizes.values()) * draw(st.sampled_from([1.0, 1.5, 2.5, 10.0]))
    tasks: list[Task] = []
    for i in range(draw(st.integers(1, 25))):
        model = draw(st.sampled_from(sorted(sizes)))
        inputs = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        if inputs:
            tasks.append(Task(id=f"t{i}", model=model, after=tuple(f"t{j}" for j in inputs)))
        else:
            tasks.append(ask(f"t{i}", model, "x" * draw(st.integers(1, 400))))
    return sizes, budget, tasks, draw(st.integers(1, 4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_plan_properties_hold_for_any_workload(workload):
    sizes, budget, tasks, devices = workload
    specs = {m: spec(m, s) for m, s in sizes.items()}
    try:
        plan = make_plan(tasks, specs, budget_mb=budget, devices=devices)
    except BadInput as exc:  # only refusal allowed: models that need each other do not fit together
        assert "need each other's output" in str(exc)
        return
    check_plan(plan, tasks, budget, sizes)
    assert {p.device for p in plan.phases} <= set(range(devices))
