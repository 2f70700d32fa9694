"""Sleep mode in a warm session: engines that can sleep are parked to make room and woken when
taken; a failed wake falls back to a fresh load; engines that cannot sleep are unloaded as before."""

from __future__ import annotations

import logging

import pytest

from batching import ExpertSpec, FakeEngine
from batching.executor import Executor, RunResult
from batching.plan import make_plan
from batching.warm import WarmEngines
from common.errors import EngineError
from common.requests import Request
from common.tasks import Task
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT


def spec(name: str, kind: str = "vllm") -> ExpertSpec:
    source = {"kind": "vllm", "model": "x"}
    if kind == "http":
        source = {"kind": "http", "base_url": "http://h/v1", "model": name}
    return ExpertSpec(name=name, source=source, memory_mb=60)


def loaded(name: str, kind: str = "vllm", **options) -> FakeEngine:
    engine = FakeEngine(spec(name, kind), **options)
    engine.load()
    return engine


def test_make_room_puts_an_engine_that_can_sleep_to_sleep() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a = loaded("a", sleeps=True)
    assert warm.give_back(a)
    warm.make_room(60, keep=["b"])
    assert a.loaded and a.sleeping and a.sleeps == 1 and a.unloads == 0
    assert warm.names == [] and warm.sleeping == ["a"]
    assert warm.held_mb() == 0  # a sleeping engine counts for nothing by default
    assert warm.counts.sleeps == 1


def test_take_wakes_a_sleeping_engine_instead_of_a_load() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a = loaded("a", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    claim = warm.claim(a.spec)
    assert claim.engine is a and claim.how == "woken"
    assert not a.sleeping and a.wakes == 1 and a.loads == 1  # woken, never loaded again
    assert a.generate([]) == []
    assert warm.sleeping == [] and warm.counts.wakes == 1 and warm.counts.failed_wakes == 0


def test_a_sleeping_engine_does_not_generate() -> None:
    a = loaded("a", sleeps=True)
    assert a.sleep()
    with pytest.raises(EngineError, match="asleep"):
        a.generate([])


def test_a_failed_wake_unloads_the_engine_and_the_caller_loads_afresh(caplog) -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a = loaded("a", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    a.wake_fails = True
    with caplog.at_level(logging.WARNING, logger="batching.warm"):
        claim = warm.claim(a.spec)
    assert claim.engine is None and claim.how == "wake_failed"
    assert not a.loaded and a.unloads == 1
    assert warm.sleeping == [] and warm.counts.failed_wakes == 1 and warm.counts.wakes == 0
    assert any("did not wake" in r.getMessage() for r in caplog.records)


def test_engines_that_cannot_sleep_are_still_unloaded() -> None:
    warm = WarmEngines(100, {"a": 60, "h": 60, "b": 60})
    a = loaded("a")  # a vLLM-kind engine that says it cannot sleep (vLLM on a CPU)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    assert not a.loaded and a.sleeps == 0 and warm.names == warm.sleeping == []
    h = loaded("h", kind="http", sleeps=True)  # the registry says http engines never sleep
    warm.give_back(h)
    warm.make_room(60, keep=["b"])
    assert not h.loaded and h.sleeps == 0 and warm.counts.sleeps == 0


def test_sleeping_engines_count_their_share_of_the_budget() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60, "c": 60}, asleep_share=0.25)
    a, b = loaded("a", sleeps=True), loaded("b", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    assert warm.held_mb() == 15  # a quarter of a's 60 MB
    assert warm.give_back(b)  # 15 + 60 fit in 100
    warm.make_room(60, keep=["c"])  # b sleeps: 30 held, and 60 more fit
    assert warm.sleeping == ["a", "b"] and warm.held_mb() == 30
    warm.make_room(80, keep=["c"])  # 30 + 80 do not fit: the longest asleep is unloaded
    assert not a.loaded and b.sleeping and warm.sleeping == ["b"] and warm.held_mb() == 15


def test_sleeping_engines_in_keep_stay_and_share_zero_never_unloads_sleepers() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60, "c": 200})
    a = loaded("a", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    warm.make_room(200, keep=["c"])  # cannot fit whatever happens; a sleeping engine frees nothing
    assert a.sleeping and warm.sleeping == ["a"]


def test_give_back_parks_an_engine_that_does_not_fit_awake() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a, b = loaded("a", sleeps=True), loaded("b")
    assert warm.give_back(b)
    assert warm.give_back(a)  # 60 + 60 > 100 awake, so it sleeps
    assert a.sleeping and warm.names == ["b"] and warm.sleeping == ["a"]
    c = loaded("b")  # cannot sleep, does not fit: not kept, the caller unloads it
    assert not WarmEngines(50, {"b": 60}).give_back(c)


def test_the_host_memory_of_sleeping_engines_is_bounded() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60, "c": 60}, asleep_budget_mb=100)
    a, b = loaded("a", sleeps=True), loaded("b", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    warm.give_back(b)
    warm.make_room(60, keep=["c"])  # parking b beside a would take 120 MB of host memory
    assert not a.loaded and b.sleeping and warm.sleeping == ["b"]


def test_a_stale_sleeping_engine_is_unloaded_without_waking() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a = loaded("a", sleeps=True)
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    changed = ExpertSpec(name="a", source={"kind": "vllm", "model": "y"}, memory_mb=60)
    claim = warm.claim(changed)
    assert claim.engine is None and claim.how == "stale" and a.wakes == 0 and not a.loaded


def test_close_unloads_sleeping_engines_too() -> None:
    warm = WarmEngines(100, {"a": 60, "b": 60})
    a, b = loaded("a", sleeps=True), loaded("b")
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    warm.give_back(b)
    warm.close()
    assert not a.loaded and not b.loaded and not a.sleeping and warm.names == warm.sleeping == []


def test_a_failed_sleep_unloads_the_engine() -> None:
    class Insomniac(FakeEngine):
        def sleep(self) -> bool:
            raise EngineError("no sleep today")

    warm = WarmEngines(100, {"a": 60, "b": 60})
    a = Insomniac(spec("a"), sleeps=True)
    a.load()
    warm.give_back(a)
    warm.make_room(60, keep=["b"])
    assert not a.loaded and warm.sleeping == [] and warm.counts.failed_sleeps == 1


def test_asleep_share_is_checked() -> None:
    with pytest.raises(ValueError, match="asleep_share"):
        WarmEngines(100, {}, asleep_share=1.5)


def session(tmp_path, budget_mb: int):
    return load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=budget_mb, policy="all"
    )


def test_a_session_short_of_memory_swaps_by_sleep_and_wake(tmp_path) -> None:
    """One default model fits at a time: the one making room sleeps and is woken, never reloaded."""
    made: dict[str, FakeEngine] = {}
    awake_together: list[int] = []

    class Counted(FakeEngine):
        def load(self) -> None:
            super().load()
            awake_together.append(sum(e.loaded and not e.sleeping for e in made.values()))

        def wake(self) -> None:
            super().wake()
            awake_together.append(sum(e.loaded and not e.sleeping for e in made.values()))

    def factory(spec):
        made[spec.name] = Counted(spec, sleeps=True)
        return made[spec.name]

    with Orchestrator(session(tmp_path, 9000), engine_factory=factory) as coe:
        coe.answer("Is water wet?", options=["yes", "no"])
        coe.answer("Is fire hot?", options=["yes", "no"])
        assert sum(e.sleeping for e in made.values()) == 1  # one awake, the other parked
    assert {n: e.loads for n, e in made.items()} == {"gemma3": 1, "smollm2": 1}  # each loaded once
    assert sum(e.wakes for e in made.values()) >= 2 and sum(e.sleeps for e in made.values()) >= 2
    assert max(awake_together) == 1  # the budget holds one awake model
    assert not any(e.loaded or e.sleeping for e in made.values())  # the session's end unloads both


def run_on(executor: Executor, model: str, question: str) -> RunResult:
    task = Task(id=f"{question}/{model}", model=model, request=Request.user(f"{question}/{model}", question))
    specs = {"a": spec("a"), "b": spec("b")}
    return executor.run(make_plan([task], specs, budget_mb=100), [task], specs, lambda t, i: None)


@pytest.mark.parametrize("wake_fails", [False, True])
def test_a_run_counts_its_wakes_and_failed_wakes(wake_fails: bool) -> None:
    made: dict[str, list[FakeEngine]] = {}

    def factory(spec: ExpertSpec) -> FakeEngine:
        made.setdefault(spec.name, []).append(FakeEngine(spec, sleeps=True))
        return made[spec.name][-1]

    warm = WarmEngines(100, {"a": 60, "b": 60})
    executor = Executor(factory, warm=warm)
    assert run_on(executor, "a", "q1").metrics.loads == 1
    assert run_on(executor, "b", "q2").metrics.loads == 1  # a sleeps to make room
    made["a"][0].wake_fails = wake_fails
    metrics = run_on(executor, "a", "q3").metrics  # b sleeps, a wakes (or is loaded afresh)
    assert (metrics.wakes, metrics.failed_wakes, metrics.loads) == ((0, 1, 1) if wake_fails else (1, 0, 0))
    assert len(made["a"]) == (2 if wake_fails else 1) and made["a"][0].loads == 1
    assert warm.sleeping == ["b"] and warm.names == ["a"]
    warm.close()


def test_the_service_parks_models_and_shows_them_in_its_metrics(tmp_path) -> None:
    import httpx

    from orchestrator.service import ServiceSettings, create_app
    from orchestrator.service.state import Service
    from tests.live_server import serving

    made: list[FakeEngine] = []

    def factory(spec, cpus=None):
        made.append(FakeEngine(spec, sleeps=True))
        return made[-1]

    core = session(tmp_path, 9000)  # room for one default model awake
    settings = ServiceSettings(core=core)
    app = create_app(settings, service=Service(settings, Orchestrator(core, engine_factory=factory)))
    with serving(app) as url:
        for question in ("Is water wet?", "Is fire hot?"):
            reply = httpx.post(f"{url}/v1/answer", json={"question": question}, timeout=60)
            assert reply.status_code == 200, reply.text
        metrics = {
            line.split()[0]: float(line.split()[-1])
            for line in httpx.get(f"{url}/metrics").text.splitlines()
            if line.startswith(("coe_models_sleeping", "coe_model_swaps_total", "coe_models_loaded"))
        }
    assert metrics["coe_models_sleeping"] == 1 and metrics["coe_models_loaded"] == 2
    assert not any(v for k, v in metrics.items() if k.startswith("coe_model_swaps_total"))  # no unload to make room
    assert sorted(e.spec.name for e in made) == ["gemma3", "smollm2"]  # each loaded once, woken after
    assert sum(e.wakes for e in made) >= 1


def test_a_models_cores_follow_the_set_of_models_not_their_order():
    """The service's warm-up binds its engines as the first phase will (found by the real tier:
    a warm-up in the pool's order and a phase in the plan's order bound them to each other's
    cores, so the first request reloaded both)."""
    from batching.warm import split_cores

    cores = (0, 1, 2, 3)
    assert split_cores(cores, ["b", "a"]) == split_cores(cores, ["a", "b"]) == {"a": (0, 1), "b": (2, 3)}
    assert split_cores(cores, ["a"]) == {} and split_cores(None, ["a", "b"]) == {}
