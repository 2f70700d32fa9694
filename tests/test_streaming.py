"""Streaming and skipping on the fast tier: the fake engine's deltas, the executor handing them
out by task id (once each, retries included), ``skip`` keeping work off engines, and the
pipeline passing both through. HTTP streaming is in test_http_streaming.py, vLLM's in
tests/real/test_vllm_streaming.py."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import defaultdict

import pytest
from test_executor import SPECS, Factory, compose, moe

from batching import ExpertSpec, FakeEngine
from batching.engines.fake import word_deltas
from batching.executor import Executor
from batching.plan import make_plan
from common.errors import EngineError
from common.requests import Generation, Request
from common.tasks import Task
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.settings import PROJECT_ROOT

CANCELLED = "cancelled: the client went away"


class Deltas:
    """An executor's ``on_delta``: every delta by task id, in order, from whichever thread."""

    def __init__(self) -> None:
        self.by_task: dict[str, list[str]] = defaultdict(list)
        self.order: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, task_id: str, text: str) -> None:
        with self.lock:
            self.by_task[task_id].append(text)
            self.order.append(task_id)

    def text(self, task_id: str) -> str:
        return "".join(self.by_task[task_id])


@pytest.mark.parametrize(
    "text", ["The answer is (B).", "  two  spaces\nand a line ", "one", "", "   ", "tab\tseparated\t"]
)
def test_word_deltas_join_to_the_text(text: str) -> None:
    pieces = word_deltas(text)
    assert "".join(pieces) == text and all(pieces)
    assert len(pieces) == len(text.split()) + (1 if text[:1].isspace() else 0)


def test_fake_engine_streams_each_answer_before_reporting_it() -> None:
    spec = ExpertSpec(name="fake", source={"kind": "vllm", "model": "packaged:x"})
    engine = FakeEngine(spec, answer=lambda s, r: f"Answer to {r.id}: it  is\n(B). ")
    engine.load()
    events: list[tuple[str, int, str]] = []
    requests = [Request.user(f"r{i}", "q") for i in range(3)]
    out = engine.generate(
        requests,
        on_result=lambda i, g: events.append(("result", i, g.text)),
        on_delta=lambda i, text: events.append(("delta", i, text)),
    )
    for i, generation in enumerate(out):
        mine = [e for e in events if e[1] == i]
        assert [kind for kind, _, _ in mine] == ["delta"] * 6 + ["result"]  # word by word, then the result
        assert "".join(text for kind, _, text in mine if kind == "delta") == generation.text
    assert engine.generate(requests) == out  # the same answers without streaming


def test_executor_hands_out_each_tasks_deltas_by_task_id() -> None:
    tasks = moe(4, ["a", "b", "c"], "agg")
    deltas = Deltas()
    result = Executor(Factory(), on_delta=deltas).run(make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose)
    assert not result.failed
    assert set(deltas.by_task) == {t.id for t in tasks}
    for task_id, generation in result.generations.items():
        assert deltas.text(task_id) == generation.text
    # an aggregation streams only after its inputs were answered
    first = {tid: deltas.order.index(tid) for tid in deltas.by_task}
    last = {tid: len(deltas.order) - 1 - deltas.order[::-1].index(tid) for tid in deltas.by_task}
    for task in tasks:
        assert all(last[d] < first[task.id] for d in task.after)


class Recording(FakeEngine):
    """Keeps the keyword arguments of every generate call."""

    calls: list[set[str]] = []

    def generate(self, requests, on_result=None, **kwargs):
        Recording.calls.append(set(kwargs))
        return super().generate(requests, on_result, **kwargs)


def test_engines_get_on_delta_only_when_someone_listens() -> None:
    tasks = moe(2, ["a", "b"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    Recording.calls = []
    Executor(Recording).run(plan, tasks, SPECS, compose)
    assert Recording.calls and all(kwargs == set() for kwargs in Recording.calls)
    Recording.calls = []
    Executor(Recording, on_delta=Deltas()).run(plan, tasks, SPECS, compose)
    assert Recording.calls and all(kwargs == {"on_delta"} for kwargs in Recording.calls)


class DiesMidStream(FakeEngine):
    """Streams the first two words of its first request, then its process 'dies'. The retry
    answers ``retry_text`` (None: the same text again)."""

    def __init__(self, spec, retry_text: str | None = None) -> None:
        super().__init__(spec, answer=lambda s, r: f"Words of {r.id} streamed twice over.")
        self.retry_text = retry_text
        self.died = False

    def generate(self, requests, on_result=None, on_delta=None):
        if not self.died:
            self.died = True
            for piece in word_deltas(self._answer(self.spec, requests[0]))[:2]:
                on_delta(0, piece)
            self.unload()
            raise EngineError("engine process died")
        if self.retry_text is not None:
            self._answer = lambda s, r: self.retry_text
        return super().generate(requests, on_result, on_delta)


def one_model_run(engine_factory, deltas: Deltas):
    tasks = [Task(id=f"t{i}", model="a", request=Request.user(f"t{i}", "q")) for i in range(2)]
    specs = {"a": SPECS["a"]}
    return Executor(engine_factory, on_delta=deltas).run(make_plan(tasks, specs, budget_mb=1000), tasks, specs, compose)


def test_a_retried_request_streams_only_past_what_it_already_streamed() -> None:
    deltas = Deltas()
    made: list[DiesMidStream] = []

    def factory(spec: ExpertSpec) -> DiesMidStream:
        made.append(DiesMidStream(spec))
        return made[-1]

    result = one_model_run(factory, deltas)
    assert not result.failed and made[0].loads == 2  # reloaded once, the batch sent again
    assert deltas.by_task["t0"] == ["Words ", "of ", "t0 ", "streamed ", "twice ", "over."]  # no word twice
    assert deltas.text("t1") == result.generations["t1"].text


def test_a_retry_that_departs_from_the_stream_ends_it(caplog: pytest.LogCaptureFixture) -> None:
    deltas = Deltas()
    with caplog.at_level(logging.WARNING, logger="batching.deltas"):
        result = one_model_run(lambda spec: DiesMidStream(spec, retry_text="Something else entirely."), deltas)
    assert result.generations["t0"].text == "Something else entirely."  # the final generation is the record
    assert deltas.by_task["t0"] == ["Words ", "of "]  # nothing of the other text was streamed after it
    assert "a retry generated another text" in caplog.text
    assert deltas.text("t1") == "Something else entirely."


def test_a_failing_listener_loses_its_stream_not_the_run(caplog: pytest.LogCaptureFixture) -> None:
    tasks = moe(2, ["a", "b"], "agg")
    deltas = Deltas()

    def listener(task_id: str, text: str) -> None:
        if task_id == "q0/a":
            raise ValueError("client queue closed")
        deltas(task_id, text)

    with caplog.at_level(logging.WARNING, logger="batching.deltas"):
        result = Executor(Factory(), on_delta=listener).run(
            make_plan(tasks, SPECS, budget_mb=1000), tasks, SPECS, compose
        )
    assert not result.failed and "q0/a" not in deltas.by_task
    assert deltas.text("q0/final") == result.generations["q0/final"].text
    assert caplog.text.count("the delta listener failed") == 1  # once: the rest of its stream is dropped


def test_skipped_tasks_are_failed_with_the_reason_before_anything_loads() -> None:
    tasks = moe(4, ["a", "b", "c"], "agg")
    factory = Factory()
    asked: list[str] = []

    def skip(task: Task) -> str | None:
        asked.append(task.id)
        return CANCELLED if task.id.startswith("q1/") else None

    plan = make_plan(tasks, SPECS, budget_mb=1000)
    result = Executor(factory, skip=skip).run(plan, tasks, SPECS, compose)
    assert result.failed == {"q1/b": CANCELLED, "q1/c": CANCELLED, "q1/final": CANCELLED}
    assert result.generations["q1/final"].error == CANCELLED
    ran = [rid for engines in factory.made.values() for e in engines for batch in e.batches for rid in batch]
    assert not any(rid.startswith("q1/") for rid in ran) and len(ran) == 9  # the other 3 questions ran
    assert set(asked) == {t.id for t in tasks}


def test_a_phase_whose_tasks_are_all_skipped_loads_nothing() -> None:
    tasks = moe(3, ["a", "b", "c"], "agg")
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    factory = Factory()
    events = []
    result = Executor(factory, progress=events.append, skip=lambda task: CANCELLED).run(plan, tasks, SPECS, compose)
    assert result.failed == {t.id: CANCELLED for t in tasks}
    assert factory.made == {}  # not even an engine made
    assert result.metrics.loads == 0 and result.metrics.phases_skipped == len(plan.phases) > 1
    assert {e.kind for e in events} == {"phase_skipped"}


def test_skip_is_asked_again_as_each_wave_builds_its_requests() -> None:
    tasks = moe(4, ["a", "b", "c"], "a")  # 'a' answers and aggregates in one phase, in two waves
    plan = make_plan(tasks, SPECS, budget_mb=1000)
    gone = threading.Event()

    def skip(task: Task) -> str | None:
        return CANCELLED if gone.is_set() and task.id == "q0/final" else None

    def progress(event) -> None:
        if event.kind == "generated" and event.model == "a":
            gone.set()  # the client leaves while a's first wave is running

    factory = Factory()
    result = Executor(factory, progress=progress, skip=skip).run(plan, tasks, SPECS, compose)
    assert result.failed == {"q0/final": CANCELLED}
    waves = factory.batches("a")
    assert len(waves) == 2 and "q0/final" not in waves[1] and "q2/final" in waves[1]


# -- the pipeline passes both through -----------------------------------------------------------


def test_pipeline_streams_expert_and_aggregate_tasks_and_skips_cancelled_questions(tmp_path) -> None:
    settings = load_settings(
        pool=PROJECT_ROOT / "pools" / "default",
        runs_dir=tmp_path / "runs",
        memory_budget_mb=8000,
        policy="all",
        aggregator_skip=False,  # the fake experts agree: the aggregation must still run to stream
    )
    made: dict[str, FakeEngine] = {}

    def factory(spec):
        return made.setdefault(spec.name, FakeEngine(spec))

    coe = Orchestrator(settings, engine_factory=factory)
    deltas = Deltas()
    pipeline = dataclasses.replace(
        coe._pipeline(coe.router(), None),
        on_delta=deltas,
        skip=lambda task: CANCELLED if task.id.startswith("gone/") else None,
    )
    questions = [
        Question(id=qid, benchmark="free", text=f"Question {qid}?", options=("yes", "no"), answer="A")
        for qid in ("kept", "gone")
    ]
    kept, gone = pipeline.run(questions)
    assert set(deltas.by_task) == {"kept/expert/gemma3", "kept/expert/smollm2", "kept/aggregate"}
    for expert in kept.trace.experts:
        assert deltas.text(f"kept/expert/{expert.expert}") == expert.text
    assert deltas.text("kept/aggregate") == kept.trace.aggregation.text
    assert gone.error is not None and CANCELLED in gone.error
    assert all(e.error == CANCELLED for e in gone.trace.experts)
    asked = [rid for engine in made.values() for batch in engine.batches for rid in batch]
    assert asked and not any(rid.startswith("gone/") for rid in asked)


def test_generation_text_is_what_was_streamed_even_when_empty() -> None:
    spec = ExpertSpec(name="fake", source={"kind": "vllm", "model": "packaged:x"})
    engine = FakeEngine(spec, answer=lambda s, r: "")
    engine.load()
    seen: list[tuple[int, str]] = []
    [generation] = engine.generate([Request.user("r", "q")], on_delta=lambda i, t: seen.append((i, t)))
    assert seen == [] and generation == Generation(
        request_id="r", model="fake", text="", tokens_in=1, tokens_out=0, finish_reason="stop"
    )
