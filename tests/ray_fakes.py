"""What the Ray tests run in their actors: engine factories the workers import by name (this folder
is on their ``PYTHONPATH``), a small task graph, and a Ray on this machine for a test module.

Ray is in the project's ``ray`` extra, which CI installs (``scripts/setup.sh``); without it the
Ray tests skip, except under ``CI=true``, where a missing Ray is a failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest

from batching import Engine, ExpertSpec, FakeEngine
from batching.engines.fake import letter_answer
from common.requests import Generation, Request
from common.tasks import Composed, Task

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def need_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ray is not installed (CI=true): scripts/setup.sh installs the 'ray' extra")
        pytest.skip("ray is not installed (pip install 'symbolic-coe[ray]')")
    return ray


def worker_path() -> str:
    """``PYTHONPATH`` for the workers: this checkout, these helpers, the benchmark scripts."""
    given = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(ROOT), str(HERE), str(ROOT / "benchmarks"), given) if p)


@contextmanager
def local_ray(cpus: int = 2) -> Iterator[ModuleType]:
    """Ray on this machine (``cpus`` logical CPUs, no dashboard), shut down on leaving."""
    ray = need_ray()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": worker_path()}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


# -- what actors run ---------------------------------------------------------------------------


def fake(spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> FakeEngine:
    """A FakeEngine answering with its letter."""
    return FakeEngine(spec)


def _slow_answer(seconds: float, spec: ExpertSpec, request: Request) -> str:
    time.sleep(seconds)
    return letter_answer(spec, request)


def slow(seconds: float):
    """A factory of FakeEngines that take ``seconds`` per request (answers as ``fake``)."""
    return partial(_slow_fake, seconds)


def _slow_fake(seconds: float, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> FakeEngine:
    return FakeEngine(spec, answer=partial(_slow_answer, seconds))


def _deadly_answer(spec: ExpertSpec, request: Request) -> str:
    if "poison" in request.text:
        os._exit(1)  # the actor's process dies, as a crashed model server does
    time.sleep(0.02)
    return letter_answer(spec, request)


def deadly(spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> FakeEngine:
    """A FakeEngine whose process dies on any request mentioning poison."""
    return FakeEngine(spec, answer=_deadly_answer)


def _fails_on_two(request: Request) -> bool:
    return request.text == "question 2?"


def failing(spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> FakeEngine:
    """A FakeEngine that raises EngineError on question 2 (the engine's own failure)."""
    return FakeEngine(spec, fail_on=_fails_on_two)


# -- a small task graph -------------------------------------------------------------------------


def spec(name: str, memory_mb: float = 1000) -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=memory_mb)


SPECS = {n: spec(n) for n in ("a", "b", "c", "agg")}


def moe(questions: int, experts: list[str], aggregator: str, k: int = 2, words: str = "") -> list[Task]:
    """Each question asked of ``k`` experts in turn, then aggregated."""
    tasks = []
    for q in range(questions):
        ids = []
        for i in range(k):
            name = experts[(q + i) % len(experts)]
            text = f"question {q}?" + (f" {words}" if words and q == 1 else "")
            tasks.append(Task(id=f"q{q}/{name}", model=name, request=Request.user(f"q{q}/{name}", text)))
            ids.append(f"q{q}/{name}")
        tasks.append(Task(id=f"q{q}/final", model=aggregator, after=tuple(ids)))
    return tasks


def compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
    quoted = "\n".join(f"[{tid}] {g.text}" for tid, g in sorted(inputs.items()))
    return Composed(request=Request.user(task.id, f"Combine these answers:\n{quoted}"), used=tuple(sorted(inputs)))


def four(spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> FakeEngine:
    """A FakeEngine whose every answer is 4."""
    return FakeEngine(spec, answer=_four)


def _four(spec: ExpertSpec, request: Request) -> str:
    return "Final answer: 4"


class KillsItsNode:
    """Replay engines (``make_engine``) slowed to ``seconds`` a request. On the node whose
    environment says ``COE_TEST_NODE=2`` (the second node of ``ray_cluster``), an engine kills
    that node's raylet (the parent of every worker it starts) once it has answered ``after``
    requests: the node dies mid-run."""

    def __init__(self, cache_dir: Path, seconds: float = 0.05, after: int = 3) -> None:
        self.cache_dir = cache_dir
        self.seconds = seconds
        self.after = after

    def __call__(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> Engine:
        from batching import make_engine

        return _Killing(make_engine(spec, cache_dir=self.cache_dir), self.seconds, self.after)


class _Killing:
    def __init__(self, engine: Engine, seconds: float, after: int) -> None:
        self.engine = engine
        self.spec = engine.spec
        self.seconds = seconds
        self.after = after
        self.answered = 0

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    def load(self) -> None:
        self.engine.load()

    def unload(self) -> None:
        self.engine.unload()

    def footprint_mb(self) -> float | None:
        return self.engine.footprint_mb()

    def generate(self, requests, on_result=None, on_delta=None):
        def arrived(index: int, generation: Generation) -> None:
            time.sleep(self.seconds)
            if on_result is not None:
                on_result(index, generation)
            self.answered += 1
            if os.environ.get("COE_TEST_NODE") == "2" and self.answered == self.after:
                parent = os.getppid()
                if Path(f"/proc/{parent}/comm").read_text().strip() != "raylet":
                    raise RuntimeError(f"the parent of this worker ({parent}) is not a raylet")
                os.kill(parent, signal.SIGKILL)

        return self.engine.generate(requests, arrived, on_delta)
