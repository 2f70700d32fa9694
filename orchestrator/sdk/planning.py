"""What the SDK would run, without running it: the plan of a batch, the model loads it would take,
its tasks (``Planning``, over the host ``Orchestrator``'s router and pipeline)."""

from __future__ import annotations

from collections.abc import Sequence

from aggregators import SynthesisJob
from batching.plan import Plan
from batching.runstore import RunStore
from common.query import Query
from common.tasks import Task
from eval.benchmarks import Benchmark
from orchestrator.pipeline.core import Pipeline
from orchestrator.pipeline.graph import task_graph
from orchestrator.pipeline.rounds import predicted_loads
from router import Router

__all__ = ["Planning"]


class Planning:
    """``plan``, ``predicted_loads`` and ``tasks`` over the host's ``router``, ``_pipeline`` and ``_queries``."""

    def router(self, policy: str | None = None, k: int | None = None) -> Router:
        raise NotImplementedError

    def _pipeline(self, router: Router, store: RunStore | None) -> Pipeline:
        raise NotImplementedError

    def _queries(self, questions: object) -> list[Query]:
        raise NotImplementedError

    def plan(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
    ) -> Plan:
        """The batch plan ``answer_batch`` would run (routing included), without running it."""
        tasks, _ = self.tasks(questions, benchmark=benchmark, policy=policy, k=k)
        return self._pipeline(self.router(policy, k), None).plan(tasks)

    def predicted_loads(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
    ) -> int:
        """The model loads ``answer_batch`` would take: its plan's, or for a cascade, at most its
        first round's plus one per model of each later round (``orchestrator.pipeline.rounds``)."""
        pipeline = self._pipeline(self.router(policy, k), None)
        asked = pipeline.ask(self._queries(questions), benchmark)
        first = pipeline.plan(task_graph(asked).tasks)
        return predicted_loads(first, [one.decision for one in asked])

    def tasks(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
    ) -> tuple[list[Task], dict[str, SynthesisJob]]:
        """The expert and aggregation tasks ``answer_batch`` would run (routing included), with each
        aggregation task's synthesis job, without running them."""
        graph = task_graph(self._pipeline(self.router(policy, k), None).ask(self._queries(questions), benchmark))
        return graph.tasks, graph.jobs
