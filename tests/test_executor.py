"""The executor on FakeEngine: one load per model, whole batches, aggregation, resume, failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batching import ExpertSpec, FakeEngine
from batching.executor import Executor, ProgressEvent
from batching.plan import make_plan
from batching.runstore import SQLiteRunStore, request_key
from common.errors import BadInput, EngineError, EngineLoadError
from common.requests import Generation, Request
from common.tasks import Composed, Task


def spec(name: str, memory_mb: float = 1000) -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=memory_mb)


def moe(questions: int, experts: list[str], aggregator: str, k: int = 2) -> list[Task]:
    tasks = []
    for q in range(questions):
        ids = []
        for i in range(k):
            name = experts[(q + i) % len(experts)]
            tasks.append(Task(id=f"q{q}/{name}", model=name, request=Request.user(f"q{q}/{name}", f"question {q}?")))
            ids.append(f"q{q}/{name}")
        tasks.append(Task(id=f"q{q}/final", model=aggregator, after=tuple(ids)))
    return tasks


def compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    quoted = "\n".join(f"[{tid}] {g.text}" for tid, g in sorted(inputs.items()))
    return Composed(request=Request.user(task.id, f"Combine these answers:\n{quoted}"), used=tuple(sorted(inputs)))


class Factory:
    """Makes FakeEngines and keeps every one it made, so tests can count loads and batches."""

    def __init__(self, **engine_args) -> None:
        self.engine_args = engine_args
        self.made: dict[str, list[FakeEngine]] = {}

    def __call__(self, spec: ExpertSpec) -> FakeEngine:
        engine = FakeEngine(spec, **self.engine_args)
        self.made.setdefault(spec.name, []).append(engine)
        return engine

    def loads(self, name: str) -> int:
        return sum(e.loads for e in self.made.get(name, []))

    def batches(self, name: str) -> list[list[str]]:
        return [b for e in self.made.get(name, []) for b in e.batches]


SPECS = {n: spec(n) for n in ("a", "b", "c", "agg")}


def test_each_model_loads_once_and_gets_whole_batches():
    tasks = moe(12, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    factory = Factory()
    result = Executor(factory).run(plan, tasks, SPECS, compose)
    assert not result.failed and set(result.generations) == {t.id for t in tasks}
    for name in SPECS:
        assert factory.loads(name) == 1
        assert all(not e.loaded for e in factory.made[name])  # unloaded after its phase
    assert [len(b) for b in factory.batches("a")] == [8]  # one generate call with every request
    assert [len(b) for b in factory.batches("agg")] == [12]
    m = result.metrics
    assert m.loads == 4 and m.generate_calls == 4 and m.requests_per_model == {"a": 8, "b": 8, "c": 8, "agg": 12}
    assert m.tokens_out > 0 and m.wall_seconds >= m.engine_seconds > 0
    assert m.overhead_seconds == pytest.approx(m.wall_seconds - m.engine_seconds)


def test_aggregation_is_composed_from_its_inputs():
    tasks = moe(3, ["a", "b"], "agg")
    seen: dict[str, dict[str, str]] = {}

    def recording(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        seen[task.id] = {tid: g.text for tid, g in inputs.items()}
        return compose(task, inputs)

    result = Executor(Factory()).run(make_plan(tasks, SPECS, budget_mb=4000), tasks, SPECS, recording)
    assert set(seen["q1/final"]) == {"q1/b", "q1/a"}
    assert seen["q1/final"]["q1/b"] == result.generations["q1/b"].text
    assert result.generations["q1/final"].model == "agg"
    record = result.composed["q1/final"]  # what went into the aggregation comes back with the result
    assert record.used == ("q1/a", "q1/b") and "Combine these answers" in record.request.text
    assert set(result.composed) == {"q0/final", "q1/final", "q2/final"}


def test_aggregator_that_is_also_an_expert_shares_one_load():
    tasks = moe(6, ["a", "b", "c"], "a")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    factory = Factory()
    result = Executor(factory).run(plan, tasks, SPECS, compose)
    assert not result.failed
    assert factory.loads("a") == 1
    first, second = factory.batches("a")  # two waves: then the aggregations that needed a's answers
    assert sorted(first) == sorted([f"q{q}/a" for q in (0, 2, 3, 5)] + ["q1/final", "q4/final"])
    assert sorted(second) == [f"q{q}/final" for q in (0, 2, 3, 5)]


def test_co_resident_models_generate_concurrently():
    tasks = [Task(id=n, model=n, request=Request.user(n, "hi")) for n in ("a", "b")]
    plan = make_plan(tasks, SPECS, budget_mb=2000)
    assert len(plan.phases) == 1
    meet = threading.Barrier(2, timeout=10)

    def answer(spec: ExpertSpec, request: Request) -> str:
        meet.wait()  # both models must be generating at the same time to get past this
        return "The answer is (A)."

    result = Executor(Factory(answer=answer)).run(plan, tasks, SPECS, compose)
    assert not result.failed


def test_phases_on_two_devices_run_in_parallel():
    tasks = moe(4, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000, devices=2)
    assert {p.device for p in plan.phases} == {0, 1}
    meet = threading.Barrier(2, timeout=10)

    def answer(spec: ExpertSpec, request: Request) -> str:
        if request.text == "question 0?":
            meet.wait()  # a and b both answer question 0, on different devices
        return "The answer is (B)."

    result = Executor(Factory(answer=answer)).run(plan, tasks, SPECS, compose)
    assert not result.failed and len(result.generations) == len(tasks)


def test_resume_skips_what_the_store_holds(tmp_path):
    tasks = moe(6, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    store = SQLiteRunStore(tmp_path / "run.sqlite")
    first = Executor(Factory(), store=store).run(plan, tasks, SPECS, compose, run_id="r")
    by_id = {t.id: t for t in tasks}

    def key(tid: str) -> str:
        request = by_id[tid].request or first.composed[tid].request
        return request_key(SPECS[by_id[tid].model], request)

    # forget everything of c and the aggregator, as if the run had been killed after b
    kept = {key(t): g for t, g in first.generations.items() if not t.endswith(("/c", "/final"))}
    store.close()
    fresh = SQLiteRunStore(tmp_path / "resumed.sqlite")
    fresh.put("r", kept)
    factory = Factory()
    second = Executor(factory, store=fresh).run(plan, tasks, SPECS, compose, run_id="r")
    assert factory.loads("a") == factory.loads("b") == 0  # their phases were skipped
    assert factory.loads("c") == factory.loads("agg") == 1
    assert sorted(x for b in factory.batches("c") for x in b) == sorted(t.id for t in tasks if t.id.endswith("/c"))
    assert second.metrics.resumed == len(kept) and second.metrics.phases_skipped == 2
    assert {t: g.text for t, g in second.generations.items()} == {t: g.text for t, g in first.generations.items()}
    assert len(fresh.get_many("r", [key(t.id) for t in tasks])) == len(tasks)
    again = Factory()
    third = Executor(again, store=fresh).run(plan, tasks, SPECS, compose, run_id="r")
    assert again.made == {} and third.metrics.resumed == len(tasks)


def test_a_transient_engine_failure_is_reloaded_and_retried():
    calls = {"n": 0}

    def flaky(request: Request) -> bool:
        calls["n"] += 1
        return calls["n"] == 1  # the very first request of the run fails once

    class DyingEngine(FakeEngine):
        """A failure takes the whole engine down, as a crashed vLLM child does."""

        def generate(self, requests, on_result=None):
            try:
                return super().generate(requests, on_result)
            except EngineError:
                self._loaded = False
                raise

    tasks = moe(4, ["a", "b"], "agg")
    made: list[DyingEngine] = []

    def factory(spec: ExpertSpec) -> DyingEngine:
        made.append(DyingEngine(spec, fail_on=flaky))
        return made[-1]

    result = Executor(factory).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    assert not result.failed
    first_model = make_plan(tasks, SPECS, budget_mb=1000).phases[0].models[0]
    assert next(e for e in made if e.spec.name == first_model).loads == 2 and result.metrics.loads == 4


def test_a_live_engine_that_errors_is_not_reloaded():
    calls = {"n": 0}

    def flaky(request: Request) -> bool:
        calls["n"] += 1
        return calls["n"] == 1

    tasks = moe(4, ["a", "b"], "agg")
    factory = Factory(fail_on=flaky)
    result = Executor(factory).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    assert not result.failed  # the batch was retried request by request on the same load
    assert result.metrics.loads == 3


def test_requests_that_keep_failing_are_isolated_and_dependents_degrade():
    def bad(request: Request) -> bool:
        return request.text in ("question 1?", "question 2?") and not request.text.startswith("Combine")

    # q1 goes to a and b: both inputs fail -> q1/final fails; q2 goes to b and a: same
    tasks = moe(4, ["a", "b"], "agg") + [
        Task(id="solo/a", model="a", request=Request.user("solo/a", "question 1?")),
        Task(id="solo/c", model="c", request=Request.user("solo/c", "fine")),
        Task(id="solo/final", model="agg", after=("solo/a", "solo/c")),
    ]
    factory = Factory(fail_on=bad)
    quoted: dict[str, set[str]] = {}

    def recording(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        quoted[task.id] = {d for d, g in inputs.items() if g.ok}
        assert all(g.error for d, g in inputs.items() if not g.ok)  # failed inputs come with their reason
        return compose(task, inputs)

    result = Executor(factory).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, recording)
    assert set(result.failed) == {"q1/a", "q1/b", "q2/a", "q2/b", "solo/a", "q1/final", "q2/final"}
    assert "failed on request" in result.failed["q1/a"]
    assert result.failed["q1/final"].startswith("every input failed")
    assert result.generations["q1/a"].error == result.failed["q1/a"]
    assert result.generations["q0/final"].ok and result.generations["solo/final"].ok  # degraded, not failed
    assert quoted["solo/final"] == {"solo/c"} and "q1/final" not in quoted  # what arrived, and no compose without it
    assert factory.loads("a") == 1  # still alive: its requests were isolated, not the model reloaded


class BrokenEngine(FakeEngine):
    def load(self) -> None:
        raise EngineLoadError(f"cannot load {self.spec.name!r}: out of memory")


def test_a_model_that_cannot_load_fails_its_tasks_and_the_run_goes_on(caplog):
    tasks = moe(3, ["a", "b"], "agg")
    made = []

    def factory(spec: ExpertSpec):
        engine = (BrokenEngine if spec.name == "b" else FakeEngine)(spec)
        made.append(engine)
        return engine

    with caplog.at_level(logging.INFO, logger="batching.executor"):
        result = Executor(factory).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    assert set(result.failed) == {"q0/b", "q1/b", "q2/b"}
    assert "out of memory" in result.failed["q0/b"]
    assert all(result.generations[f"q{q}/final"].ok for q in range(3))
    assert "attempt 2" in caplog.text


def test_an_engine_that_cannot_be_made_fails_its_tasks():
    tasks = moe(2, ["a", "b"], "agg")

    def factory(spec: ExpertSpec) -> FakeEngine:
        if spec.name == "a":
            raise EngineLoadError("packaged model 'x' is not installed")
        return FakeEngine(spec)

    result = Executor(factory).run(make_plan(tasks, SPECS, budget_mb=4000), tasks, SPECS, compose)
    assert set(result.failed) == {"q0/a", "q1/a"} and "not installed" in result.failed["q0/a"]
    assert result.generations["q0/final"].ok


def test_progress_events_and_log_lines(caplog):
    tasks = moe(3, ["a", "b"], "agg")
    events: list[ProgressEvent] = []
    with caplog.at_level(logging.INFO, logger="batching.executor"):
        Executor(Factory(), progress=events.append).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    kinds = [e.kind for e in events]
    assert kinds.count("phase_start") == kinds.count("phase_done") == 3
    assert kinds.count("model_loaded") == 3
    loaded = [e for e in events if e.kind == "model_loaded"]
    assert all(e.seconds > 0 and e.total == 3 for e in loaded)  # real load times, per model
    generated = [e for e in events if e.kind == "generated"]
    for model in ("a", "b", "agg"):  # one event as each generation arrives, then the batch's total
        mine = [e for e in generated if e.model == model]
        assert [e.done for e in mine] == [1, 2, 3, 3] and all(e.total == 3 and e.tokens > 0 for e in mine)
    done = [e for e in events if e.kind == "phase_done"]
    assert [e.total for e in done] == [3, 3, 3] and all(e.done == e.total for e in done)
    assert sum("phase 0 on device 0" in r.getMessage() for r in caplog.records) == 1


def test_plan_and_tasks_must_match():
    tasks = moe(2, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    with pytest.raises(BadInput, match="plan does not match"):
        Executor(Factory()).run(plan, tasks[:-1], SPECS, compose)


def test_a_compose_error_fails_only_that_task():
    tasks = moe(2, ["a", "b"], "agg")

    def picky(task: Task, inputs: Mapping[str, Generation]) -> Request:
        if task.id == "q0/final":
            raise BadInput("aggregation prompt would be too long")
        return compose(task, inputs)

    result = Executor(Factory()).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, picky)
    assert set(result.failed) == {"q0/final"} and "too long" in result.failed["q0/final"]


def test_failed_tasks_are_retried_when_the_run_resumes(tmp_path):
    tasks = moe(4, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    store = SQLiteRunStore(tmp_path / "run.sqlite")
    first = Executor(Factory(fail_on=lambda r: r.text == "question 2?"), store=store).run(
        plan, tasks, SPECS, compose, run_id="r"
    )
    assert set(first.failed) == {"q2/a", "q2/b", "q2/final"}
    factory = Factory()
    second = Executor(factory, store=store).run(plan, tasks, SPECS, compose, run_id="r")
    assert not second.failed
    generated = sorted(x for name in SPECS for b in factory.batches(name) for x in b)
    assert generated == ["q2/a", "q2/b", "q2/final"]
    store.close()


@st.composite
def workloads(draw):
    names = [f"m{i}" for i in range(draw(st.integers(1, 4)))]
    tasks: list[Task] = []
    for i in range(draw(st.integers(1, 20))):
        model = draw(st.sampled_from(names))
        inputs = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        if inputs:
            tasks.append(Task(id=f"t{i}", model=model, after=tuple(f"t{j}" for j in inputs)))
        else:
            tasks.append(Task(id=f"t{i}", model=model, request=Request.user(f"t{i}", f"prompt {i}")))
    return names, tasks, draw(st.sampled_from([1000, 2000, 4000])), draw(st.integers(1, 3))


def _mutual_groups(tasks: list[Task]) -> list[set[str]]:
    """The models that reach each other through task inputs (each model reaches itself)."""
    model = {t.id: t.model for t in tasks}
    reach = {m: {m} for m in model.values()}
    for task in tasks:
        for dep in task.after:
            reach[model[dep]].add(task.model)
    changed = True
    while changed:
        changed = False
        for out in reach.values():
            more = set().union(*(reach[x] for x in out)) - out
            if more:
                out |= more
                changed = True
    return [{n for n in reach if m in reach[n] and n in reach[m]} for m in reach]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_any_plan_runs_every_task_once_with_one_load_per_model(workload):
    names, tasks, budget, devices = workload
    specs = {n: spec(n) for n in names}
    if max(len(group) for group in _mutual_groups(tasks)) * 1000 > budget:
        # models that need each other's output must be resident together: refused, and said so
        with pytest.raises(BadInput, match="must be resident together"):
            make_plan(tasks, specs, budget_mb=budget, devices=devices)
        return
    plan = make_plan(tasks, specs, budget_mb=budget, devices=devices)
    factory = Factory()
    result = Executor(factory).run(plan, tasks, specs, compose)
    assert not result.failed and set(result.generations) == {t.id for t in tasks}
    generated = [x for n in names for b in factory.batches(n) for x in b]
    assert sorted(generated) == sorted(t.id for t in tasks)
    assert all(factory.loads(n) == 1 for n in {t.model for t in tasks})
    assert result.metrics.loads == len({t.model for t in tasks})


def test_a_changed_request_under_the_same_run_id_is_generated_again(tmp_path):
    """Stored generations are keyed by what was asked: change one expert's prompt and exactly
    its tasks (and the aggregations that read them) run again."""
    tasks = moe(4, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    with SQLiteRunStore(tmp_path / "run.sqlite") as store:
        before = Executor(Factory(), store=store).run(plan, tasks, SPECS, compose, run_id="r")
        changed = [
            t.model_copy(update={"request": Request.user(t.id, "a different prompt")}) if t.id.endswith("/b") else t
            for t in tasks
        ]
        factory = Factory()
        result = Executor(factory, store=store).run(plan, changed, SPECS, compose, run_id="r")
        assert factory.loads("a") == 0 and factory.loads("b") == 1 and factory.loads("agg") == 1
        assert sorted(x for b in factory.batches("b") for x in b) == [f"q{q}/b" for q in range(4)]
        same_aggregations = sum(result.composed[f"q{q}/final"] == before.composed[f"q{q}/final"] for q in range(4))
        assert same_aggregations < 4  # an aggregation runs again when what it reads changed...
        assert result.metrics.resumed == 4 + same_aggregations  # ...and only then; a's four tasks are reused
        unchanged = Factory()
        again = Executor(unchanged, store=store).run(plan, changed, SPECS, compose, run_id="r")
        assert unchanged.made == {} and again.metrics.resumed == len(tasks)


def test_each_generation_is_checkpointed_as_it_arrives(tmp_path):
    """A kill in the middle of a batch loses only what was in flight: every generation the engine
    reported is already in the store before the batch ends."""
    tasks = moe(5, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    store = SQLiteRunStore(tmp_path / "run.sqlite")
    seen_in_store: list[int] = []

    class Killed(FakeEngine):
        def generate(self, requests, on_result=None):
            def arrived(index, generation):
                on_result(index, generation)
                if self.spec.name == "a" and index == 2:
                    seen_in_store.append(len(store.get_many("r", [request_key(self.spec, r) for r in requests])))
                    raise KeyboardInterrupt  # the process is killed mid-batch

            return super().generate(requests, arrived)

    with pytest.raises(KeyboardInterrupt):
        Executor(lambda spec: Killed(spec), store=store).run(plan, tasks, SPECS, compose, run_id="r")
    assert seen_in_store == [3]  # three of a's five were stored before the batch ended
    factory = Factory()
    Executor(factory, store=store).run(plan, tasks, SPECS, compose, run_id="r")
    assert sorted(x for b in factory.batches("a") for x in b) == ["q3/a", "q4/a"]  # only the lost ones
    store.close()


def test_a_store_that_cannot_be_written_stops_the_run(tmp_path):
    """Not the engine's fault: no retry, no isolation, no answers quietly marked failed."""

    class Full(SQLiteRunStore):
        def put(self, run_id, generations):
            raise BadInput(f"run store {self.path} cannot be written: database or disk is full")

    tasks = moe(3, ["a", "b"], "agg")
    factory = Factory()
    with Full(tmp_path / "run.sqlite") as store, pytest.raises(BadInput, match="disk is full"):
        Executor(factory, store=store).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    assert sum(len(b) for e in factory.made.values() for engine in e for b in engine.batches) <= 3
    assert not any(engine.loaded for e in factory.made.values() for engine in e)


def test_operational_settings_do_not_change_the_request_key():
    from batching.runstore import request_key

    ask = Request.user("t", "What is 2+2?", question_id="q")
    base = ExpertSpec(name="m", source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"})
    tuned = base.model_copy(
        update={
            "source": base.source.model_copy(
                update={"gpu_memory_utilization": 0.5, "max_num_seqs": 8, "kv_cache_gib": 2.0, "enforce_eager": False}
            )
        }
    )
    assert request_key(tuned, ask) == request_key(base, ask)
    longer = base.model_copy(update={"source": base.source.model_copy(update={"max_model_len": 4096})})
    assert request_key(longer, ask) != request_key(base, ask)


def test_the_aggregator_is_not_loaded_when_every_expert_failed():
    """Nothing reached the aggregator: its tasks fail with the experts' reasons and its model is
    never loaded (each model its own phase: budget for one)."""
    tasks = moe(4, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    factory = Factory(fail_on=lambda request: True)
    result = Executor(factory).run(plan, tasks, SPECS, compose)
    finals = [t.id for t in tasks if t.after]
    assert set(finals) <= set(result.failed)
    assert all("every input failed" in result.failed[t] for t in finals)
    assert factory.loads("agg") == 0 and factory.loads("a") == 1
    assert result.metrics.loads == 2
