"""Work-aware placement over several devices, for the batch planner (``batching.plan``,
``placement="work"``).

Groups (``batching.schedule``) are placed stage by stage: a stage is the groups at one depth of
the group graph (aggregators after the others of their depth), so a stage's groups never need
each other and every input of a stage was placed before it. For each stage the placement looks
for the smallest common finish time (binary search) at which every group fits on the devices:
groups in decreasing expected work, each whole on the device it fills best (light groups pinned
together), and a group that fits no device whole split between *replicas* on the devices with
the most room, each replica paying its own load. A group can be split when it is one model
whose tasks form at least two *units* (tasks joined by dependencies among the model's own tasks
stay together); a replica serves whole units. Each device's share of a stage then becomes its
phases: consecutive groups and replicas share a phase (co-resident) while they fit the memory
budget and add no wait. A phase waits on the phases of other devices that serve its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from batching.schedule import Draft, GroupGraph, group_order
from common.tasks import Task

__all__ = ["Unit", "split_units", "stages", "work_schedule"]

_SEARCH_STEPS = 40


@dataclass(frozen=True)
class Unit:
    """Tasks of one model that must run on the same replica, and their predicted seconds (no load)."""

    tasks: tuple[str, ...]
    seconds: float


Share = tuple[int, float | None]
"""(group, work seconds of one replica's share; None: the whole group)."""


def split_units(ordered: Sequence[Task], graph: GroupGraph, task_seconds: Mapping[str, float]) -> dict[int, list[Unit]]:
    """The units of each group that can be split between replicas: one model, two units or more."""
    root = {t.id: t.id for t in ordered}

    def find(tid: str) -> str:
        while root[tid] != tid:
            root[tid] = root[root[tid]]
            tid = root[tid]
        return tid

    model_of = {t.id: t.model for t in ordered}
    for task in ordered:
        for dep in task.after:
            if model_of[dep] == task.model:
                root[find(task.id)] = find(dep)
    found: dict[int, dict[str, list[str]]] = {}
    for task in ordered:
        gi = graph.group_of[task.model]
        if len(graph.groups[gi]) == 1:
            found.setdefault(gi, {}).setdefault(find(task.id), []).append(task.id)
    return {
        gi: [Unit(tuple(ids), sum(task_seconds[t] for t in ids)) for ids in units.values()]
        for gi, units in found.items()
        if len(units) > 1
    }


def stages(graph: GroupGraph) -> list[list[int]]:
    """Groups by depth in the group graph (inputs first), aggregators after the others of their depth."""
    depth: dict[int, int] = {}
    for gi in group_order(graph.needs):
        depth[gi] = 1 + max((depth[n] for n in graph.needs[gi]), default=-1)
    keys = sorted({(depth[gi], graph.aggregates[gi]) for gi in depth})
    return [[gi for gi in sorted(depth) if (depth[gi], graph.aggregates[gi]) == key] for key in keys]


def _fill(
    limit: float,
    order: Sequence[int],
    cost: Sequence[float],
    load: Sequence[float],
    ready: Mapping[int, float],
    units: Mapping[int, list[Unit]],
    free: Sequence[float],
) -> list[list[Share]] | None:
    """Each device's shares of the stage when every device finishes by ``limit``, or None if that
    does not fit: whole groups best fit, a group that fits nowhere whole split on the devices with
    the most room."""
    free = list(free)
    out: list[list[Share]] = [[] for _ in free]
    for gi in order:
        starts = [max(f, ready[gi]) for f in free]
        fits = [d for d in range(len(free)) if starts[d] + cost[gi] <= limit]
        if fits:
            d = min(fits, key=lambda d: (limit - starts[d] - cost[gi], d))
            out[d].append((gi, None))
            free[d] = starts[d] + cost[gi]
            continue
        if gi not in units:
            return None
        work = cost[gi] - load[gi]
        unit = sum(u.seconds for u in units[gi]) / len(units[gi])  # a replica needs room for about one unit
        for d in sorted(range(len(free)), key=lambda d: (starts[d], d)):  # the most room first
            room = limit - starts[d] - load[gi]
            if room < unit or work <= 0:
                break
            share = min(work, room)
            out[d].append((gi, share))
            free[d] = starts[d] + load[gi] + share
            work -= share
        if work > 1e-9 * max(cost[gi], 1.0):
            return None
    return out


def _place_stage(
    order: Sequence[int],
    cost: Sequence[float],
    load: Sequence[float],
    ready: Mapping[int, float],
    units: Mapping[int, list[Unit]],
    free: Sequence[float],
) -> list[list[Share]]:
    """The shares of the smallest common finish time found (binary search; all on one device always fits)."""
    lo = min(free)
    hi = max([*free, *(ready[gi] for gi in order)]) + sum(cost[gi] for gi in order)
    best = _fill(hi, order, cost, load, ready, units, free)
    assert best is not None
    for _ in range(_SEARCH_STEPS):
        mid = (lo + hi) / 2
        got = _fill(mid, order, cost, load, ready, units, free)
        if got is None:
            lo = mid
        else:
            hi, best = mid, got
        if hi - lo <= 1e-6 * max(hi, 1.0):
            break
    return best


def _deal(units: list[Unit], shares: list[float]) -> list[list[Unit]]:
    """Units to replicas in order, each replica taking about its share of the work."""
    bounds = list(accumulate(shares))
    out: list[list[Unit]] = [[] for _ in shares]
    k, done = 0, 0.0
    for unit in units:
        middle = done + unit.seconds / 2
        while k < len(shares) - 1 and middle > bounds[k]:
            k += 1
        out[k].append(unit)
        done += unit.seconds
    return out


def work_schedule(
    graph: GroupGraph,
    ordered: Sequence[Task],
    task_seconds: Mapping[str, float],
    load: Sequence[float],
    devices: int,
    budget_mb: float,
) -> tuple[list[Draft], float]:
    """The phases (drafts) of the work-aware placement and its predicted makespan; ``load`` is
    each group's load seconds (paid again by every replica)."""
    units = split_units(ordered, graph, task_seconds)
    tasks_of: dict[int, list[str]] = {}
    for task in ordered:
        tasks_of.setdefault(graph.group_of[task.model], []).append(task.id)
    inputs = {t.id: t.after for t in ordered}
    drafts: list[Draft] = []
    phase_of: dict[str, int] = {}
    free = [0.0] * devices

    def end(index: int) -> float:
        return drafts[index].start + drafts[index].seconds

    def sources(ids: Sequence[str]) -> set[int]:
        own = set(ids)
        return {phase_of[dep] for tid in ids for dep in inputs[tid] if dep not in own}

    for stage in stages(graph):
        ready = {gi: max((end(p) for p in sources(tasks_of[gi])), default=0.0) for gi in stage}
        order = sorted(stage, key=lambda gi: (-graph.seconds[gi], gi))
        shares = _place_stage(order, graph.seconds, load, ready, units, free)
        dealt: dict[tuple[int, int], list[Unit]] = {}
        for gi in {gi for row in shares for gi, share in row if share is not None}:
            where = [(d, share) for d, row in enumerate(shares) for g, share in row if g == gi]
            for (d, _), got in zip(where, _deal(units[gi], [share or 0.0 for _, share in where]), strict=True):
                dealt[gi, d] = got
        for d, row in enumerate(shares):
            current: Draft | None = None
            for gi, share in row:
                if share is None:
                    ids, seconds = tasks_of[gi], graph.seconds[gi]
                else:
                    ids = [tid for unit in dealt[gi, d] for tid in unit.tasks]
                    seconds = load[gi] + sum(unit.seconds for unit in dealt[gi, d])
                    if not ids:
                        continue  # a replica left without a unit is not loaded
                feeding = sources(ids)
                wait = max((end(p) for p in feeding), default=0.0)
                others = {p for p in feeding if drafts[p].device != d}
                if current is None or current.memory + graph.size[gi] > budget_mb or wait > current.start:
                    current = Draft(index=len(drafts), device=d, start=max(free[d], wait), after=[])
                    drafts.append(current)
                current.groups.append(gi)
                current.memory += graph.size[gi]
                current.seconds += seconds
                current.after = sorted(set(current.after) | others)
                if share is not None:
                    current.only[gi] = frozenset(ids)
                for tid in ids:
                    phase_of[tid] = current.index
                free[d] = end(current.index)
    return drafts, max((end(i) for i in range(len(drafts))), default=0.0)
