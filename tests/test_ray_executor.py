"""The Ray executor on a Ray started on this machine, with fake engines in its actors: the same
run as the local executor (generations, compositions, failures, metrics, progress), resume from
one to the other, a killed actor's in-flight requests retried (bounded), the engine's own errors
handled as locally, streaming, placement over the plan's devices, and nothing left behind."""

from __future__ import annotations

import threading
import time

import pytest
import ray_fakes
from ray_fakes import SPECS, compose, moe

from batching.executor import Executor, ProgressEvent
from batching.plan import make_plan
from batching.ray_engine import ActorPolicy
from batching.ray_executor import RayExecutor
from batching.results import RunResult
from batching.runstore import SQLiteRunStore, request_key
from common.errors import Unavailable


@pytest.fixture(scope="module")
def ray():
    with ray_fakes.local_ray(cpus=2) as ray:
        yield ray


def same_run(ours: RunResult, theirs: RunResult) -> None:
    """Two runs of one plan gave the same generations, compositions, failures and counts."""
    assert {t: g.model_dump(exclude={"seconds"}) for t, g in ours.generations.items()} == {
        t: g.model_dump(exclude={"seconds"}) for t, g in theirs.generations.items()
    }
    assert list(ours.generations) == list(theirs.generations)
    assert ours.composed == theirs.composed and ours.failed == theirs.failed and ours.cached == theirs.cached
    counted = ("loads", "loads_per_model", "generate_calls", "requests_per_model", "tokens_in", "tokens_out")
    counted += ("phases_run", "phases_skipped", "resumed", "failed", "skipped")
    assert ours.metrics.model_dump(include=set(counted)) == theirs.metrics.model_dump(include=set(counted))


def events(into: list[tuple]) -> object:
    lock = threading.Lock()

    def heard(event: ProgressEvent) -> None:
        with lock:
            into.append((event.kind, event.phase, event.model, event.done, event.total, event.failed, event.tokens))

    return heard


def test_a_plan_runs_on_ray_as_it_runs_here(ray):
    """Two devices, an aggregator composed from its inputs: the same result and the same progress
    events (timings aside), each model's actor placed in its device's bundle."""
    tasks = moe(10, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000, devices=2)
    assert len({p.device for p in plan.phases}) == 2
    heard_here: list[tuple] = []
    heard_there: list[tuple] = []
    here = Executor(ray_fakes.fake, progress=events(heard_here)).run(plan, tasks, SPECS, compose, run_id="r")
    executor = RayExecutor(ray_fakes.fake, progress=events(heard_there))
    there = executor.run(plan, tasks, SPECS, compose, run_id="r")
    same_run(there, here)
    assert not there.failed and there.metrics.retried == 0
    assert sorted(heard_there) == sorted(heard_here)
    assert set(executor.placed) == set(SPECS)
    assert all(where["node"] == ray.get_runtime_context().get_node_id() for where in executor.placed.values())


def test_a_run_started_on_ray_resumes_here_and_the_other_way_round(ray, tmp_path):
    tasks = moe(8, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    first_half = [t for t in tasks if int(t.id.split("/")[0][1:]) < 4]
    with SQLiteRunStore(tmp_path / "run.sqlite") as store:
        started = RayExecutor(ray_fakes.fake, store=store).run(
            make_plan(first_half, SPECS, budget_mb=1000), first_half, SPECS, compose, run_id="r"
        )
        assert started.metrics.resumed == 0 and not started.failed
        resumed = Executor(ray_fakes.fake, store=store).run(plan, tasks, SPECS, compose, run_id="r")
        assert resumed.metrics.resumed == len(first_half)
        assert resumed.metrics.requests_per_model == {"a": 4, "b": 4, "agg": 4}  # only the second half ran
        back = RayExecutor(ray_fakes.fake, store=store).run(plan, tasks, SPECS, compose, run_id="r")
        assert back.metrics.resumed == len(tasks) and back.metrics.loads == 0
        assert back.metrics.phases_skipped == len(plan.phases)
    fresh = Executor(ray_fakes.fake).run(plan, tasks, SPECS, compose, run_id="r")
    assert {t: g.text for t, g in back.generations.items()} == {t: g.text for t, g in fresh.generations.items()}


def test_a_killed_actor_loses_only_its_in_flight_requests(ray, tmp_path):
    """``ray.kill`` of a's actor once three of its results are in: what came back is kept (and
    stored), what was in flight is sent again to a new actor; the run ends with nothing lost."""
    tasks = moe(12, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    executor: RayExecutor | None = None
    killed: list[int] = []

    def kill_a(event: ProgressEvent) -> None:
        if event.kind == "generated" and event.model == "a" and event.done == 3 and not killed:
            assert executor is not None
            killed.append(event.done)
            ray.kill(executor.actors()["a"])

    engine = ray_fakes.slow(0.1)
    executor = RayExecutor(engine, progress=kill_a, policy=ActorPolicy(batch_size=8))
    with SQLiteRunStore(tmp_path / "run.sqlite") as store:
        executor.store = store
        result = executor.run(plan, tasks, SPECS, compose, run_id="r")
        assert killed == [3]
        assert not result.failed
        # a's 12 requests went in chunks of 8 and 4: the first chunk lost at most its last 5
        assert 1 <= result.metrics.retried <= 5 and result.metrics.loads_per_model["a"] == 1
        by_id = {t.id: t for t in tasks}
        keys = [request_key(SPECS[by_id[t].model], by_id[t].request or result.composed[t].request) for t in by_id]
        assert len(store.get_many("r", keys)) == len(tasks)  # every generation reached the store
    same_run(result, Executor(engine).run(plan, tasks, SPECS, compose, run_id="r"))


def test_a_request_that_kills_every_actor_fails_after_its_retries(ray):
    """A request whose actor dies each time it is sent: sent again twice, then failed with the
    reason; the requests that shared its batch are retried apart from it and answered."""
    tasks = moe(6, ["a", "b"], "agg", words="poison")  # question 1 kills whichever expert gets it
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    result = RayExecutor(ray_fakes.deadly, policy=ActorPolicy(batch_size=16)).run(plan, tasks, SPECS, compose)
    poisoned = {t.id for t in tasks if t.request is not None and "poison" in t.request.text}
    assert set(result.failed) == poisoned | {"q1/final"}
    for tid in poisoned:
        assert "lost with its Ray actor 3 times" in result.failed[tid]
    assert "every input failed" in result.failed["q1/final"]
    healthy = Executor(ray_fakes.fake).run(plan, tasks, SPECS, compose)
    assert all(result.generations[t].text == healthy.generations[t].text for t in result.generations if t[:2] != "q1")
    assert result.metrics.retried >= 2 * len(poisoned)


def test_an_engine_error_in_an_actor_is_handled_as_here(ray):
    """The fake raises EngineError on one request: isolated by halving, as the local executor
    does, with the same failures and reasons."""
    tasks = moe(6, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    here = Executor(ray_fakes.failing).run(plan, tasks, SPECS, compose)
    there = RayExecutor(ray_fakes.failing).run(plan, tasks, SPECS, compose)
    assert here.failed and set(there.failed) == set(here.failed)
    same_run(there, here)


def test_text_streams_from_the_actors(ray):
    tasks = moe(4, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    streamed: dict[str, str] = {}
    lock = threading.Lock()

    def on_delta(task_id: str, text: str) -> None:
        with lock:
            streamed[task_id] = streamed.get(task_id, "") + text

    result = RayExecutor(ray_fakes.fake, on_delta=on_delta).run(plan, tasks, SPECS, compose)
    assert streamed == {t: g.text for t, g in result.generations.items()}


def test_a_cluster_that_cannot_hold_the_plan_is_one_error(ray):
    tasks = moe(2, ["a"], "agg", k=1)
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    executor = RayExecutor(ray_fakes.fake, cpus_per_device=64, policy=ActorPolicy(place_timeout_s=1))
    with pytest.raises(Unavailable, match=r"cannot hold 1 device\(s\) of \{'CPU': 64"):
        executor.run(plan, tasks, SPECS, compose)


def test_nothing_is_left_on_the_cluster_after_a_run(ray):
    """Every actor ended and the placement group removed, also when the run raised."""
    tasks = moe(3, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000, devices=2)

    def stop(event: ProgressEvent) -> None:
        if event.kind == "generated" and event.model == "b":
            raise KeyboardInterrupt

    RayExecutor(ray_fakes.fake).run(plan, tasks, SPECS, compose)
    with pytest.raises(KeyboardInterrupt):
        RayExecutor(ray_fakes.slow(0.05), progress=stop).run(plan, tasks, SPECS, compose)
    groups = ray.util.placement_group_table()
    assert groups and all(group["state"] == "REMOVED" for group in groups.values())
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2
