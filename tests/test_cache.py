"""The generation cache in the executor and the SDK: a repeated question runs nothing; fresh
samples are never cached; ``refresh`` and ``off``; a store that is down stops the run and
touches no run store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing

import pytest

from batching import ExpertSpec, FakeEngine
from batching.executor import Executor
from batching.plan import make_plan
from batching.runstore import SQLiteRunStore, request_key
from common.errors import Unavailable
from common.requests import Generation, Request
from common.tasks import Task
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.settings import PROJECT_ROOT
from orchestrator.stores import SQLiteGenerationStore
from tests.redis_server import redis_server  # noqa: F401
from tests.test_executor import SPECS, Factory, compose, moe


class DictCache:
    """A generation cache in a dict, beside the real stores: counts what it is asked."""

    def __init__(self) -> None:
        self.entries: dict[str, Generation] = {}
        self.asked = 0
        self.puts: list[int] = []

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        keys = list(keys)
        self.asked += len(keys)
        return {k: self.entries[k] for k in keys if k in self.entries}

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        self.puts.append(len(entries))
        self.entries.update({k: g for k, g in entries.items() if g.ok})


class Down:
    """A cache whose store cannot be reached."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        raise Unavailable("redis at redis://127.0.0.1:9/0 is unreachable: refused")

    def put_many(self, entries: Mapping[str, Generation]) -> None:
        raise Unavailable("redis at redis://127.0.0.1:9/0 is unreachable: refused")


def run(tasks, cache, factory=None, specs=SPECS, **executor):
    factory = factory or Factory()
    plan = make_plan(tasks, specs, budget_mb=1000)
    return factory, Executor(factory, cache=cache, **executor).run(plan, tasks, specs, compose)


# -- the executor ----------------------------------------------------------------------------------


def test_a_second_run_of_the_same_tasks_loads_and_runs_nothing(tmp_path):
    tasks = moe(6, ["a", "b", "c"], "agg")
    with SQLiteGenerationStore(tmp_path / "cache.sqlite") as cache:
        _, first = run(tasks, cache)
        assert first.metrics.cache_hits == 0 and first.metrics.cache_misses == len(tasks)
        factory, second = run(tasks, cache)
        assert factory.made == {}  # no engine was even made
        m = second.metrics
        assert m.loads == 0 and m.generate_calls == 0 and m.phases_run == 0
        assert m.cache_hits == len(tasks) and m.cache_misses == 0
        assert {t: g.text for t, g in second.generations.items()} == {t: g.text for t, g in first.generations.items()}
        assert all(second.generations[t.id].request_id == (t.request.id if t.request else t.id) for t in tasks)
        assert cache.stats.hits == len(tasks) and second.cached == {t.id for t in tasks} and first.cached == set()


def test_only_new_questions_run_and_the_cached_aggregations_are_not_redone():
    cache = DictCache()
    run(moe(4, ["a", "b", "c"], "agg"), cache)
    factory, result = run(moe(6, ["a", "b", "c"], "agg"), cache)
    assert sorted(r for b in factory.batches("agg") for r in b) == ["q4/final", "q5/final"]
    ran = sorted(r for m in "abc" for b in factory.batches(m) for r in b)
    assert ran == sorted(t.id for t in moe(6, ["a", "b", "c"], "agg") if t.id.startswith(("q4/", "q5/")) and t.request)
    assert result.metrics.cache_hits == 12 and not result.failed


def test_a_composed_request_made_during_a_phase_is_looked_up_before_it_runs():
    """The aggregator is also an expert: its own answers must be generated (dropped from the cache),
    but the aggregation composed from them is the one cached: the aggregator does not run it."""
    tasks = moe(6, ["a", "b", "c"], "a")
    cache = DictCache()
    _, first = run(tasks, cache)
    for task in tasks:
        if task.model == "a" and task.request is not None:
            del cache.entries[request_key(SPECS["a"], task.request)]
    factory, second = run(tasks, cache)
    assert factory.loads("a") == 1 and factory.loads("b") == 0 and factory.loads("c") == 0
    asked = [r for b in factory.batches("a") for r in b]
    assert asked and not any(r.endswith("/final") for r in asked)  # the aggregations came from the cache
    assert second.metrics.cache_hits == len(tasks) - len(asked)
    assert second.generations["q0/final"].text == first.generations["q0/final"].text


def test_fresh_samples_are_neither_read_nor_written():
    hot = {n: s.model_copy(update={"sampling": s.sampling.model_copy(update={"temperature": 0.8, "seed": None})})
           for n, s in SPECS.items()}  # fmt: skip
    tasks = [Task(id=f"t{i}", model="a", request=Request.user(f"t{i}", f"question {i}?")) for i in range(3)]
    cache = DictCache()
    run(tasks, cache, specs=hot)
    factory, result = run(tasks, cache, specs=hot)
    assert cache.entries == {} and cache.asked == 0 and cache.puts == []
    assert factory.loads("a") == 1 and result.metrics.cache_hits == result.metrics.cache_misses == 0
    seeded = [t.model_copy(update={"request": t.request.model_copy(update={"seed": 7})}) for t in tasks]
    run(seeded, cache, specs=hot)  # a seed makes the sample repeatable: cached
    factory, result = run(seeded, cache, specs=hot)
    assert factory.made == {} and result.metrics.cache_hits == 3


def test_without_reads_every_task_runs_and_its_entry_is_replaced():
    tasks = moe(3, ["a", "b"], "agg")
    cache = DictCache()
    run(tasks, cache)
    factory = Factory(answer=lambda spec, request: f"{spec.name} changed its mind. The answer is (D).")
    _, result = run(tasks, cache, factory, cache_reads=False)
    assert cache.asked == len(tasks)  # only the first run read it
    assert factory.loads("agg") == 1 and result.metrics.cache_hits == 0
    experts = [request_key(SPECS[t.model], t.request) for t in tasks if t.request is not None]
    assert all("changed its mind" in cache.entries[k].text for k in experts)  # replaced under the same keys
    finals = [result.composed[t.id].request for t in tasks if t.after]
    assert all("changed its mind" in cache.entries[request_key(SPECS["agg"], r)].text for r in finals)


def test_a_cache_that_is_down_stops_the_run_before_anything_loads(tmp_path):
    tasks = moe(2, ["a", "b"], "agg")
    factory = Factory()
    with SQLiteRunStore(tmp_path / "runs.sqlite") as store:
        plan = make_plan(tasks, SPECS, budget_mb=1000)
        with pytest.raises(Unavailable, match="redis at redis://127.0.0.1:9/0 is unreachable"):
            Executor(factory, store, cache=Down()).run(plan, tasks, SPECS, compose, run_id="r")
        assert factory.made == {}
        assert store.get_many("r", [request_key(SPECS[t.model], t.request) for t in tasks if t.request]) == {}


def test_the_run_store_is_read_before_the_cache(tmp_path):
    tasks = moe(2, ["a", "b"], "agg")
    cache = DictCache()
    with SQLiteRunStore(tmp_path / "runs.sqlite") as store:
        plan = make_plan(tasks, SPECS, budget_mb=1000)
        Executor(Factory(), store, cache=cache).run(plan, tasks, SPECS, compose, run_id="r")
        asked = cache.asked
        again = Executor(Factory(), store, cache=cache).run(plan, tasks, SPECS, compose, run_id="r")
    assert again.metrics.resumed == len(tasks) and again.metrics.cache_hits == 0 and cache.asked == asked


# -- the SDK ----------------------------------------------------------------------------------------


class Engines:
    """Fake engines whose answers can change between calls (``mood``); counts loads and calls."""

    def __init__(self) -> None:
        self.made: list[FakeEngine] = []
        self.mood = "calm"

    def __call__(self, spec: ExpertSpec) -> FakeEngine:
        engine = FakeEngine(spec, answer=lambda s, r: f"{s.name} is {self.mood}. The answer is (A).")
        self.made.append(engine)
        return engine

    @property
    def loads(self) -> int:
        return sum(e.loads for e in self.made)

    @property
    def calls(self) -> int:
        return sum(len(e.batches) for e in self.made)


def coe_with(tmp_path, **settings) -> tuple[Orchestrator, Engines]:
    engines = Engines()
    core = load_settings(
        pool=PROJECT_ROOT / "pools" / "default",
        runs_dir=tmp_path / "runs",
        memory_budget_mb=20_000,
        policy="all",
        **{"aggregator_skip": False, **settings},  # the aggregation is cached too: it must run
    )
    return Orchestrator(core, engine_factory=engines), engines


def questions(n: int) -> list[Question]:
    return [
        Question(id=f"q{i}", benchmark="free", text=f"Question {i}?", options=("yes", "no"), answer="A")
        for i in range(n)
    ]


def test_sdk_second_batch_makes_no_engine_call_and_no_load(tmp_path):
    coe, engines = coe_with(tmp_path)
    first = coe.answer_batch(questions(5))
    loads, calls = engines.loads, engines.calls
    assert loads == 2 and calls > 0
    second = coe.answer_batch(questions(5))
    assert (engines.loads, engines.calls) == (loads, calls)
    assert [a.text for a in second] == [a.text for a in first] and all(a.trace.loads == 0 for a in second)
    assert [a.trace.cache_hits for a in first] == [0] * 5 and [a.trace.cache_hits for a in second] == [3] * 5
    assert "from the cache: 3" in second[0].summary()
    stats = coe.generation_store.stats.snapshot()
    assert stats["hits"] == 15 and stats["bad_entries"] == 0  # 5 x (2 experts + the aggregation)
    assert (tmp_path / "runs" / "store.sqlite").is_file()
    one = coe.answer(questions(1)[0])  # answer() uses it too
    assert one.text == first[0].text and engines.calls == calls


def test_sdk_cache_off_regenerates_and_opens_no_store(tmp_path):
    coe, engines = coe_with(tmp_path, cache="off")
    coe.answer_batch(questions(3))
    calls = engines.calls
    coe.answer_batch(questions(3))
    assert engines.calls == 2 * calls and coe.cache is None
    assert not (tmp_path / "runs" / "store.sqlite").exists()


def test_sdk_refresh_regenerates_and_overwrites(tmp_path):
    store = str(tmp_path / "shared.sqlite")
    coe, engines = coe_with(tmp_path, store=store)
    coe.answer_batch(questions(3))
    refresher, fresh_engines = coe_with(tmp_path, store=store, cache="refresh")
    fresh_engines.mood = "sure"
    refreshed = refresher.answer_batch(questions(3))
    assert fresh_engines.calls > 0 and "sure" in refreshed[0].trace.experts[0].text
    engines.mood = "grumpy"  # would show if anything were generated again
    calls = engines.calls
    again = coe.answer_batch(questions(3))
    assert engines.calls == calls and "sure" in again[0].trace.experts[0].text


def test_sdk_with_redis_down_is_unavailable_and_touches_no_sqlite(tmp_path, redis_server):  # noqa: F811
    coe, engines = coe_with(tmp_path, store=redis_server.url)
    coe.answer_batch(questions(2), run_id="night")
    runs = tmp_path / "runs" / "generations.v3.sqlite"
    with closing(sqlite3.connect(runs)) as db:
        before = db.execute("SELECT * FROM generations ORDER BY request_key").fetchall()
    redis_server.stop()
    calls = engines.calls
    with pytest.raises(Unavailable, match=f"redis at {redis_server.url} is unreachable"):
        coe.answer_batch(questions(4), run_id="night")
    assert engines.calls == calls
    with closing(sqlite3.connect(runs)) as db:
        assert db.execute("SELECT * FROM generations ORDER BY request_key").fetchall() == before
    assert not (tmp_path / "runs" / "store.sqlite").exists()
    redis_server.start()
    answers = coe.answer_batch(questions(4), run_id="night")  # the same store object, reconnected
    assert all(a.error is None for a in answers)
