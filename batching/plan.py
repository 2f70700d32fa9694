"""The batch plan: which models are resident together, on which device, serving which tasks.

Models that depend on each other's output (a task of one needs a task of the other, both ways)
must be resident together; they form a *group*. On one device (and with ``placement="groups"``)
every model is loaded once per run: groups are scheduled in dependency order by list scheduling
over the devices (highest remaining critical path first, aggregators last, each on the device
that can start it soonest: LPT when groups are independent), and a group joins the device's
current phase when it fits the memory budget and adds no new wait on another device.

With several devices, ``placement="work"`` (the default) places groups by their expected work
(``batching.placement``): a model whose work exceeds its share is *replicated*, its tasks split
between replicas on different devices (each replica a load), light models are pinned together
under the budget, and the devices finish each stage together. The planner keeps whichever of
the two schedules it predicts to finish first.

The cost model is deliberately simple: a model costs its load seconds plus its prompt and
output tokens over its throughputs (output tokens: the measured mean per request where given,
else the request's ``max_tokens``); co-resident models share one device, so a phase costs the
sum of its models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from batching.engines.kinds import KINDS, ModelCost, engine_kind
from batching.placement import work_schedule
from batching.schedule import Draft, GroupGraph, group_graph, list_schedule
from batching.spec import ExpertSpec
from common.errors import BadInput, ConfigError
from common.names import unknown_name
from common.tasks import Task

__all__ = ["DEFAULT_COSTS", "ModelCost", "Phase", "Placement", "Plan", "make_plan", "model_footprint", "task_order"]

Placement = Literal["work", "groups"]
"""How groups go to devices: ``work`` (replicas of heavy models, balanced by expected work) or
``groups`` (each model once, list scheduling); the same on one device."""


DEFAULT_COSTS: dict[str, ModelCost] = {name: kind.cost for name, kind in KINDS.items()}
"""Defaults per engine kind (``batching.engines.kinds``); override per model."""

_COMPOSED_OVERHEAD_TOKENS = 100  # instructions around the answers an aggregation prompt quotes


class Phase(BaseModel):
    """Models resident together on one device and the tasks they serve, in dependency order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(..., ge=0)
    device: int = Field(..., ge=0)
    models: tuple[str, ...]
    tasks: tuple[str, ...] = Field(..., description="Task ids in dependency order.")
    after: tuple[int, ...] = Field((), description="Phases on other devices that must finish first.")
    requests: dict[str, int] = Field(..., description="Tasks per model.")
    composed: dict[str, int] = Field(..., description="Of those, tasks composed from inputs (aggregation).")
    memory_mb: float
    predicted_start: float
    predicted_seconds: float


class Plan(BaseModel):
    """Ordered phases; on each device, phases run in index order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phases: tuple[Phase, ...]
    devices: int
    budget_mb: float
    aggregators: tuple[str, ...]
    predicted_loads: int
    predicted_seconds: float = Field(..., description="Predicted makespan over all devices.")

    def phase_of(self) -> dict[str, int]:
        """Task id -> index of the phase that serves it."""
        return {task: phase.index for phase in self.phases for task in phase.tasks}

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def render(self) -> str:
        """A readable text table of the plan."""
        head = (
            f"plan: {len(self.phases)} phase(s) on {self.devices} device(s), "
            f"{self.predicted_loads} load(s), predicted {self.predicted_seconds:.1f} s, "
            f"budget {self.budget_mb:g} MB"
        )
        rows = [("phase", "device", "after", "start_s", "time_s", "memory_mb", "models (requests)")]
        for p in self.phases:
            served = []
            for model in p.models:
                n, agg = p.requests.get(model, 0), p.composed.get(model, 0)
                count = f"{n - agg} + {agg} agg" if agg else str(n)
                mark = "*" if model in self.aggregators else ""
                served.append(f"{model}{mark} ({count})")
            rows.append(
                (
                    str(p.index),
                    str(p.device),
                    ",".join(map(str, p.after)) or "-",
                    f"{p.predicted_start:.1f}",
                    f"{p.predicted_seconds:.1f}",
                    f"{p.memory_mb:g}",
                    ", ".join(served),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = [head]
        for row in rows:
            cells = [cell.rjust(width) for cell, width in zip(row[:-1], widths, strict=True)]
            lines.append("  ".join([*cells, row[-1]]))
        if self.aggregators:
            lines.append("* aggregator")
        return "\n".join(lines)


def task_order(tasks: Sequence[Task]) -> list[Task]:
    """Tasks in dependency order (stable); errors on duplicates, unknown inputs and cycles."""
    by_id: dict[str, Task] = {}
    for task in tasks:
        if task.id in by_id:
            raise BadInput(f"task id {task.id!r} appears twice")
        by_id[task.id] = task
    for task in tasks:
        for dep in task.after:
            if dep not in by_id:
                raise BadInput(f"task {task.id!r} waits on unknown task {dep!r}")
            if dep == task.id:
                raise BadInput(f"task {task.id!r} waits on itself")
    if not any(task.after for task in tasks):
        return list(tasks)  # nothing waits: the order given
    waiting = {t.id: len(set(t.after)) for t in tasks}
    users: dict[str, list[str]] = {t.id: [] for t in tasks}
    for task in tasks:
        for dep in set(task.after):
            users[dep].append(task.id)
    ready = [t.id for t in tasks if waiting[t.id] == 0]
    order: list[str] = []
    while ready:
        current, ready = ready, []
        for tid in current:
            order.append(tid)
            for user in users[tid]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
    if len(order) < len(tasks):
        stuck = sorted(tid for tid, n in waiting.items() if n > 0)
        raise BadInput(f"tasks wait on each other in a cycle: {', '.join(stuck[:5])}")
    return [by_id[tid] for tid in order]


def model_footprint(name: str, spec: ExpertSpec, footprints: Mapping[str, float]) -> float:
    """The memory (MB) the planner counts for a model: measured, else declared, else 0 for models
    served from elsewhere; a local model with neither is a ConfigError."""
    if name in footprints:
        return float(footprints[name])
    if spec.memory_mb is not None:
        return float(spec.memory_mb)
    if not engine_kind(spec).local:
        return 0.0  # served from a file or from elsewhere: holds no local accelerator memory
    raise ConfigError(f"model {name!r} has no memory footprint: set memory_mb in its pool entry or pass a measured one")


def _tokens(
    task: Task,
    spec: ExpertSpec,
    by_id: Mapping[str, Task],
    specs: Mapping[str, ExpertSpec],
    measured: Mapping[str, float],
) -> tuple[int, int]:
    """Predicted (prompt, output) tokens of one task: ~4 characters a token; output the model's
    measured mean (under the request's cap) where known, else the cap."""
    out = _output(task, spec, measured)
    if task.request is not None:
        chars = sum(len(m.content) for m in task.request.messages) + len(spec.system_prompt or "")
        return chars // 4 + 1, out
    quoted = 0
    for dep in task.after:
        dep_task = by_id[dep]
        quoted += _output(dep_task, specs[dep_task.model], measured)
    return quoted + _COMPOSED_OVERHEAD_TOKENS, out


def _output(task: Task, spec: ExpertSpec, measured: Mapping[str, float]) -> int:
    cap = (task.request.max_tokens if task.request else None) or spec.sampling.max_tokens
    if task.model in measured:
        return min(cap, max(1, round(measured[task.model])))
    return cap


def make_plan(
    tasks: Sequence[Task],
    specs: Mapping[str, ExpertSpec],
    *,
    budget_mb: float,
    footprints: Mapping[str, float] | None = None,
    devices: int = 1,
    aggregators: Iterable[str] | None = None,
    costs: Mapping[str, ModelCost] | None = None,
    output_tokens: Mapping[str, float] | None = None,
    placement: Placement = "work",
) -> Plan:
    """Plan ``tasks`` under ``budget_mb`` per device: on one device each model loads once.

    ``footprints`` are measured sizes (MB) that take precedence over ``spec.memory_mb``;
    ``aggregators`` are scheduled after every other ready model (default: the models that
    run composed tasks); ``costs`` override the cost model per model name; ``output_tokens``
    are measured mean output tokens per request per model (profiles, past runs); ``placement``
    picks how groups go to several devices (``Placement``).
    """
    if not budget_mb > 0:
        raise BadInput(f"memory budget must be positive, got {budget_mb}")
    if devices < 1:
        raise BadInput(f"devices must be at least 1, got {devices}")
    if placement not in ("work", "groups"):
        raise BadInput(f"placement must be 'work' or 'groups', got {placement!r}")
    footprints = dict(footprints or {})
    costs = dict(costs or {})
    measured = dict(output_tokens or {})
    ordered = task_order(tasks)
    models: list[str] = []
    for task in tasks:
        if task.model not in specs:
            raise unknown_name("model", task.model, specs)
        if task.model not in models:
            models.append(task.model)
    aggs = set(aggregators) if aggregators is not None else {t.model for t in tasks if t.after}
    unknown = sorted(aggs - set(specs))
    if unknown:
        raise unknown_name("aggregator", unknown[0], specs)

    size = {m: model_footprint(m, specs[m], footprints) for m in models}
    for model in models:
        if size[model] > budget_mb:
            raise BadInput(f"model {model!r} needs {size[model]:g} MB, more than the memory budget of {budget_mb:g} MB")

    seconds, task_seconds = _model_seconds(ordered, models, specs, costs, measured)
    graph = group_graph(ordered, models, size, seconds, aggs, budget_mb)
    drafts, _ = list_schedule(graph, devices, budget_mb)
    makespan = _settle(drafts)
    if placement == "work" and devices > 1:
        load = [sum(_cost(m, specs, costs).load_seconds for m in group) for group in graph.groups]
        placed, _ = work_schedule(graph, ordered, task_seconds, load, devices, budget_mb)
        predicted = _settle(placed)
        if predicted < makespan * (1 - 1e-9):
            drafts, makespan = placed, predicted
    out = _phases(drafts, graph, ordered)
    return Plan(
        phases=tuple(out),
        devices=devices,
        budget_mb=budget_mb,
        aggregators=tuple(sorted(aggs & set(models))),
        predicted_loads=sum(len(p.models) for p in out),
        predicted_seconds=round(makespan, 3),
    )


def _cost(model: str, specs: Mapping[str, ExpertSpec], costs: Mapping[str, ModelCost]) -> ModelCost:
    return costs.get(model) or engine_kind(specs[model]).cost


def _model_seconds(
    ordered: Sequence[Task],
    models: list[str],
    specs: Mapping[str, ExpertSpec],
    costs: Mapping[str, ModelCost],
    measured: Mapping[str, float],
) -> tuple[dict[str, float], dict[str, float]]:
    """Each model's predicted seconds (its load, then its prompt and output tokens over its
    speeds) and each task's (its tokens only)."""
    by_id = {t.id: t for t in ordered}
    prompt = {m: 0 for m in models}
    output = {m: 0 for m in models}
    model_cost = {m: _cost(m, specs, costs) for m in models}
    per_task = {}
    for task in ordered:
        p, o = _tokens(task, specs[task.model], by_id, specs, measured)
        prompt[task.model] += p
        output[task.model] += o
        cost = model_cost[task.model]
        per_task[task.id] = o / cost.tokens_per_second + p / cost.prompt_tokens_per_second
    seconds = {}
    for m in models:
        cost = model_cost[m]
        seconds[m] = cost.load_seconds + output[m] / cost.tokens_per_second + prompt[m] / cost.prompt_tokens_per_second
    return seconds, per_task


def _phases(drafts: list[Draft], graph: GroupGraph, ordered: Sequence[Task]) -> list[Phase]:
    """The drafts as phases, ordered by predicted start (creation order breaks ties, so inputs come first)."""
    order = sorted(range(len(drafts)), key=lambda i: (drafts[i].start, i))
    renumber = {old: new for new, old in enumerate(order)}
    out = []
    for new, old in enumerate(order):
        ph = drafts[old]
        phase_models = [m for gi in ph.groups for m in graph.groups[gi]]
        served = [
            t
            for t in ordered
            if graph.group_of[t.model] in ph.groups
            and (graph.group_of[t.model] not in ph.only or t.id in ph.only[graph.group_of[t.model]])
        ]
        requests = Counter(t.model for t in served)
        composed = Counter(t.model for t in served if t.request is None)
        out.append(
            Phase(
                index=new,
                device=ph.device,
                models=tuple(phase_models),
                tasks=tuple(t.id for t in served),
                after=tuple(sorted(renumber[a] for a in ph.after)),
                requests={m: requests[m] for m in phase_models},
                composed={m: composed[m] for m in phase_models},
                memory_mb=ph.memory,
                predicted_start=round(ph.start, 3),
                predicted_seconds=round(ph.seconds, 3),
            )
        )
    return out


def _settle(drafts: list[Draft]) -> float:
    """Move each draft's start to when every phase it waits for has ended whole and its device is
    free (a phase drafted beside an input's group may see that input's phase grow afterwards);
    returns the makespan. Drafts are taken by start, creation breaking ties: inputs come first."""
    free: dict[int, float] = {}
    for i in sorted(range(len(drafts)), key=lambda i: (drafts[i].start, i)):
        draft = drafts[i]
        ends = [drafts[a].start + drafts[a].seconds for a in draft.after]
        draft.start = max([draft.start, free.get(draft.device, 0.0), *ends])
        free[draft.device] = draft.start + draft.seconds
    return max(free.values(), default=0.0)
