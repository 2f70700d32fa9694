"""Scheduling for the batch planner (``batching.plan``): models that need each other's output
form *groups* (strongly connected components of the model graph); groups are placed on devices
by list scheduling (highest remaining critical path first, aggregators last, each on the device
that can start it soonest), joining the device's open phase when it fits the memory budget and
adds no new wait on another device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.errors import BadInput
from common.tasks import Task


def model_groups(models: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of the model graph (Tarjan), in first-seen order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                found.append(group)

    for model in models:
        if model not in index:
            visit(model)
    rank = {m: i for i, m in enumerate(models)}
    return [sorted(g, key=rank.__getitem__) for g in found]


def group_order(needs: list[set[int]]) -> list[int]:
    """Groups in topological order (inputs first); the group graph is acyclic by construction."""
    waiting = [len(n) for n in needs]
    feeds: list[list[int]] = [[] for _ in needs]
    for gi, inputs in enumerate(needs):
        for source in inputs:
            feeds[source].append(gi)
    ready = [gi for gi, n in enumerate(waiting) if n == 0]
    order = []
    while ready:
        gi = ready.pop(0)
        order.append(gi)
        for user in feeds[gi]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return order


@dataclass
class Draft:
    """A phase while the list scheduler builds it."""

    index: int
    device: int
    start: float
    after: list[int]
    groups: list[int] = field(default_factory=list)
    memory: float = 0.0


@dataclass(frozen=True)
class GroupGraph:
    """The planner's graph of groups: which need which, and what each costs and holds."""

    groups: list[list[str]]
    group_of: dict[str, int]
    needs: list[set[int]]
    """Group -> the groups whose output it needs."""
    feeds: list[set[int]]
    """Group -> the groups that need its output."""
    seconds: list[float]
    size: list[float]
    aggregates: list[bool]


def group_graph(
    ordered: Sequence[Task],
    models: list[str],
    size: Mapping[str, float],
    seconds: Mapping[str, float],
    aggregators: set[str],
    budget_mb: float,
) -> GroupGraph:
    """The groups of ``models`` under the task graph; a group over the budget is refused."""
    by_id = {t.id: t for t in ordered}
    needs: dict[str, set[str]] = {m: set() for m in models}  # edge: input model -> model that needs it
    for task in ordered:
        for dep in task.after:
            if by_id[dep].model != task.model:
                needs[task.model].add(by_id[dep].model)
    feeds: dict[str, set[str]] = {m: set() for m in models}
    for model, inputs in needs.items():
        for source in inputs:
            feeds[source].add(model)
    groups = model_groups(models, feeds)
    group_of = {m: gi for gi, g in enumerate(groups) for m in g}
    for group in groups:
        total = sum(size[m] for m in group)
        if total > budget_mb:
            raise BadInput(
                f"models {', '.join(group)} need each other's output so must be resident together, "
                f"but need {total:g} MB, more than the memory budget of {budget_mb:g} MB"
            )
    g_needs = [{group_of[d] for m in g for d in needs[m]} - {gi} for gi, g in enumerate(groups)]
    g_feeds: list[set[int]] = [set() for _ in groups]
    for gi, group_inputs in enumerate(g_needs):
        for group_source in group_inputs:
            g_feeds[group_source].add(gi)
    return GroupGraph(
        groups=groups,
        group_of=group_of,
        needs=g_needs,
        feeds=g_feeds,
        seconds=[sum(seconds[m] for m in g) for g in groups],
        size=[sum(size[m] for m in g) for g in groups],
        aggregates=[any(m in aggregators for m in g) for g in groups],
    )


def list_schedule(graph: GroupGraph, devices: int, budget_mb: float) -> tuple[list[Draft], dict[int, float]]:
    """The phases (drafts) and each group's predicted finish, by list scheduling over ``devices``."""
    rank: dict[int, float] = {}  # upward rank: own cost + longest path after it
    for gi in reversed(group_order(graph.needs)):
        rank[gi] = graph.seconds[gi] + max((rank[s] for s in graph.feeds[gi]), default=0.0)
    phases: list[Draft] = []
    current: list[int | None] = [None] * devices  # open phase per device
    free = [0.0] * devices
    finish: dict[int, float] = {}
    phase_of_group: dict[int, int] = {}
    waiting = {gi: len(graph.needs[gi]) for gi in range(len(graph.groups))}
    ready = [gi for gi, n in waiting.items() if n == 0]
    while ready:
        ready.sort(key=lambda gi: (graph.aggregates[gi], -rank[gi], gi))
        gi = ready.pop(0)
        best = None
        for d in range(devices):
            dep_phases = {phase_of_group[s] for s in graph.needs[gi]}
            open_phase = current[d]
            if open_phase is not None:
                ph = phases[open_phase]
                allowed = {open_phase, *ph.after} | {p.index for p in phases if p.device == d}
                if ph.memory + graph.size[gi] <= budget_mb and dep_phases <= allowed:
                    option = (free[d], 0, d, True)
                    best = option if best is None or option < best else best
                    continue
            start = max([free[d], *(finish[s] for s in graph.needs[gi])])
            option = (start, 1, d, False)
            best = option if best is None or option < best else best
        assert best is not None
        start, _, d, merge = best
        if merge:
            open_index = current[d]
            assert open_index is not None
            ph = phases[open_index]
        else:
            ph = Draft(
                index=len(phases),
                device=d,
                start=start,
                after=sorted({phase_of_group[s] for s in graph.needs[gi]} - {p.index for p in phases if p.device == d}),
            )
            phases.append(ph)
            current[d] = ph.index
        ph.groups.append(gi)
        ph.memory += graph.size[gi]
        phase_of_group[gi] = ph.index
        free[d] = start + graph.seconds[gi]
        finish[gi] = free[d]
        for user in graph.feeds[gi]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return phases, finish


__all__ = ["Draft", "GroupGraph", "group_graph", "group_order", "list_schedule", "model_groups"]
