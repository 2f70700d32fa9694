"""Tasks: the unit the planner schedules and the executor runs.

A task asks one model for one generation. A task with ``after`` needs the generations of
other tasks first (an aggregation needs its experts' answers); its request is built at run
time by the caller's ``Compose`` function from those generations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.requests import Generation, Request


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., min_length=1)
    model: str = Field(..., min_length=1, description="Name of the expert/aggregator that runs it.")
    request: Request | None = Field(None, description="Fixed request; None when composed from inputs.")
    after: tuple[str, ...] = Field((), description="Tasks whose generations this one needs.")

    @model_validator(mode="after")
    def _has_a_request(self) -> Task:
        if self.request is None and not self.after:
            raise ValueError(f"task {self.id!r} has neither a request nor inputs to compose one from")
        return self


class Composed(BaseModel):
    """What a dependent task was asked, and which of its inputs went into the request.

    Returned by ``Compose`` and handed back, unchanged, in the run's result: the record of
    what went into each aggregation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: Request
    used: tuple[str, ...] = Field(..., description="Input task ids whose generations the request holds.")
    left_out: tuple[tuple[str, str], ...] = Field((), description="(input task id, why it was left out).")
    skipped: str | None = Field(
        None, description="Why the task need not run: its inputs already agree (the request is not sent)."
    )
    stands: str | None = Field(
        None, description="With ``skipped``: the input task id whose generation stands as the task's answer."
    )


Compose = Callable[[Task, Mapping[str, Generation]], Composed]
"""Builds a dependent task's request from the generations of the tasks it waits on (failed ones
included, with ``error`` set, so the record can say what was left out). It is a pure function
of its arguments: a resumed run composes the same request again."""


RunTasks = Callable[[list[Task]], dict[str, Generation]]
"""Runs tasks (each model loaded once) and returns every task's generation by task id; the
orchestrator supplies it to the packages that need generations but never call engines."""
