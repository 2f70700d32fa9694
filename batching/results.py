"""What a run reports: progress events as it goes, and its result and metrics at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.requests import Generation
from common.tasks import Composed

__all__ = ["ProgressCallback", "ProgressEvent", "RunMetrics", "RunResult"]


class ProgressEvent(BaseModel):
    """One step of a run, passed to the progress callback (from the thread that did it).

    ``route_start``/``route_done`` come from the pipeline (no phase); the rest from the executor:
    per phase ``phase_start`` ... ``phase_done`` (or ``phase_skipped``), per model
    ``model_loading``, ``model_loaded`` (with its load time) and ``generated`` (its tasks done so
    far out of its total in the phase)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal[
        "route_start",
        "route_done",
        "phase_start",
        "phase_skipped",
        "model_loading",
        "model_loaded",
        "generated",
        "phase_done",
    ]
    phase: int | None = None
    device: int = 0
    model: str | None = None
    done: int = Field(0, description="Tasks resolved so far (of the phase, or of the model's share of it).")
    failed: int = 0
    total: int = Field(0, description="Tasks to run (of the phase, or of the model's share of it).")
    tokens: int = Field(0, description="Tokens written so far (generated events).")
    seconds: float = Field(0.0, description="How long the step took (load, phase, routing).")


class RunMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loads: int = 0
    loads_per_model: dict[str, int] = Field(default_factory=dict)
    load_seconds: float = 0.0
    generate_seconds: float = 0.0
    unload_seconds: float = 0.0
    wakes: int = Field(0, description="Engines a warm session had put to sleep, woken instead of loaded.")
    failed_wakes: int = Field(0, description="Sleeping engines that did not wake (unloaded, then loaded afresh).")
    wake_seconds: float = Field(0.0, description="Seconds spent waking sleeping engines.")
    engine_seconds: float = Field(0.0, description="Wall time during which any engine call was running.")
    generate_calls: int = 0
    requests_per_model: dict[str, int] = Field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    phases_run: int = 0
    phases_skipped: int = 0
    resumed: int = Field(0, description="Tasks found finished in the run store and not run again.")
    cache_hits: int = Field(0, description="Tasks answered from the generation cache (no load, no engine call).")
    cache_misses: int = Field(0, description="Tasks looked up in the generation cache and not found there.")
    failed: int = 0
    retried: int = Field(
        0, description="Requests sent again after their engine died or its Ray actor or node was lost."
    )
    skipped: int = Field(0, description="Composed tasks not run: their inputs agreed (an aggregation's consensus).")
    wall_seconds: float = 0.0
    overhead_seconds: float = Field(0.0, description="wall_seconds - engine_seconds: time spent outside engines.")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    generations: dict[str, Generation] = Field(..., description="Every task's generation; failed ones carry .error.")
    failed: dict[str, str] = Field(..., description="Failed task id -> reason.")
    composed: dict[str, Composed] = Field(
        default_factory=dict, description="Composed task id -> what went into its request."
    )
    cached: set[str] = Field(default_factory=set, description="Ids of the tasks answered from the generation cache.")
    metrics: RunMetrics


ProgressCallback = Callable[[ProgressEvent], None]
