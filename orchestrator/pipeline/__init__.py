"""The one pipeline: route -> plan -> generate -> aggregate (or skip on consensus), with resume,
cost and trace. Every door runs it.

    asked.py      a query decided once (route, prompt, judge, aggregator, competence): ``Asked``
    core.py       ``Pipeline``: ``ask`` (route and decide), ``answer`` (plan, run, build answers), ``run``
    graph.py      the task graph of decided records (expert tasks shared, aggregations waiting)
    rounds.py     a cascade's rounds
    answering.py  answers from a run's result: votes, synthesis, consensus, fallback, cost, trace
    task_ids.py   the one place task ids are spelled
    trace.py      ``Answer`` and its ``Trace``
    items.py      which benchmark item a question is (for recorded experts)
    inputs.py     checks on what callers hand in
    sources.py    whether a pool's experts can be reached
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from orchestrator.pipeline.asked import Asked, Prompting, prompting
    from orchestrator.pipeline.core import Answered, Pipeline, require_answer
    from orchestrator.pipeline.trace import Answer, Timings, Trace

__getattr__, __dir__ = lazy(
    __name__,
    {
        "Asked": "orchestrator.pipeline.asked",
        "Prompting": "orchestrator.pipeline.asked",
        "prompting": "orchestrator.pipeline.asked",
        "Answered": "orchestrator.pipeline.core",
        "Pipeline": "orchestrator.pipeline.core",
        "require_answer": "orchestrator.pipeline.core",
        "Answer": "orchestrator.pipeline.trace",
        "Timings": "orchestrator.pipeline.trace",
        "Trace": "orchestrator.pipeline.trace",
    },
)

__all__ = ["Answer", "Answered", "Asked", "Pipeline", "Prompting", "Timings", "Trace", "prompting", "require_answer"]
