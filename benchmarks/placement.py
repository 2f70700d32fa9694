"""Placement across devices: the makespan of three planners on a skewed 16-expert workload, run
by the executor on timed fake engines under a simulated clock.

Workload: N questions, each routed to k=3 distinct experts of 16 with a skewed (Zipf, exponent
1) distribution over a seeded expert order, then one aggregation per question (the aggregator
quotes its experts' answers). Each answer's length is drawn around its expert's mean (x0.5 to
x1.5); the planner is told each model's mean output tokens (``output_tokens=``, as a caller fills
it from profiles and past runs), its speeds and load time (``costs=``), never the draws.

Planners, all run by the same Executor:

    first_seen  models in order of appearance dealt round-robin over the devices, the
                aggregator last (Symbolic-MoE's order), each model loaded once
    groups      today's planner: list scheduling of groups, each model loaded once
                (make_plan(placement="groups"))
    work        the work-aware placement: heavy experts replicated, light ones pinned
                together, stages balanced (make_plan, the default)

Timing: each engine counts simulated seconds: its load time at load, and per batch its output
tokens over its tokens/s plus its prompt tokens over its prompt tokens/s (co-resident models
share a device, so a phase takes the sum of its engines'). The makespan replays the run on a
simulated clock: on each device the phases in plan order, each starting when the device is
free and the phases of other devices it waits for (``after``) are done; that is the order the
executor enforces, so the makespan is the run's on engines that take those times. The lower
bound is (all token work + one load of every model) / devices, which is at least token work /
devices + one load per device; it ignores that aggregations wait for their experts.
``--sleep-check`` runs one small plan with engines that really sleep (scaled) and compares the
wall time with the simulated makespan.

Scenarios: ``gpu-7-9b`` (16 experts of 7-9B parameters, one GPU per device; published figures,
see SOURCES) and ``cpu-small`` (SmolLM2-135M and Gemma-3-270M on vLLM's CPU build, measured in
benchmarks/results/engines.json; one 2-core machine per device).

    python benchmarks/placement.py [--questions-gpu 12032 --questions-cpu 1000] [--write]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from _placement_setup import (
    ASSUMPTIONS,
    SOURCES,
    K,
    Model,
    Scenario,
    Workload,
    cpu_scenario,
    gpu_scenario,
    workload,
)

from batching.executor import Executor
from batching.plan import Phase, Plan, make_plan
from batching.spec import ExpertSpec
from common.requests import Generation, Request
from common.tasks import Composed, Task

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "placement.json"
DEVICES = (1, 2, 4, 8)
PLANNERS = ("first_seen", "groups", "work")
COMPOSED_OVERHEAD = 100  # tokens of instructions around the quoted answers (as the planner assumes)


class TimedEngine:
    """A fake engine that counts the seconds its model would take (and sleeps them, scaled, if asked)."""

    def __init__(self, spec: ExpertSpec, model: Model, work: Workload, sleep_scale: float = 0.0) -> None:
        self.spec, self.model, self.work, self.sleep_scale = spec, model, work, sleep_scale
        self.busy = 0.0
        self.served: list[str] = []
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _spend(self, seconds: float) -> None:
        self.busy += seconds
        if self.sleep_scale:
            time.sleep(seconds * self.sleep_scale)

    def load(self) -> None:
        if not self._loaded:
            self._spend(self.model.load_s)
            self._loaded = True

    def generate(self, requests: Sequence[Request], on_result=None, on_delta=None) -> list[Generation]:
        out_tokens = [self.work.output[r.id] for r in requests]
        in_tokens = [self.work.prompt[r.id] for r in requests]
        self._spend(sum(out_tokens) / self.model.tokens_per_s + sum(in_tokens) / self.model.prompt_tokens_per_s)
        out = []
        for i, request in enumerate(requests):
            generation = Generation(
                request_id=request.id,
                model=self.spec.name,
                text="The answer is (A).",
                tokens_in=in_tokens[i],
                tokens_out=out_tokens[i],
                finish_reason="stop",
            )
            out.append(generation)
            self.served.append(request.id)
            if on_result is not None:
                on_result(i, generation)
        return out

    def unload(self) -> None:
        self._loaded = False

    def footprint_mb(self) -> float | None:
        return self.model.memory_mb


def first_seen_plan(tasks: Sequence[Task], scenario: Scenario, devices: int) -> Plan:
    """Models in order of appearance dealt round-robin over the devices, the aggregator last; each
    phase waits for the phases of other devices that serve its inputs."""
    order: list[str] = []
    for task in tasks:
        if task.model not in order and task.model != scenario.aggregator:
            order.append(task.model)
    order.append(scenario.aggregator)
    served: dict[str, list[Task]] = {m: [] for m in order}
    for task in tasks:
        served[task.model].append(task)
    phase_of = {t.id: i for i, m in enumerate(order) for t in served[m]}
    phases = []
    for i, model in enumerate(order):
        device = i % devices
        after = {phase_of[d] for t in served[model] for d in t.after if phase_of[d] % devices != device}
        phases.append(
            Phase(
                index=i,
                device=device,
                models=(model,),
                tasks=tuple(t.id for t in served[model]),
                after=tuple(sorted(after)),
                requests={model: len(served[model])},
                composed={model: sum(t.request is None for t in served[model])},
                memory_mb=scenario.models[model].memory_mb,
                predicted_start=0.0,
                predicted_seconds=0.0,
            )
        )
    return Plan(
        phases=tuple(phases),
        devices=devices,
        budget_mb=scenario.budget_mb,
        aggregators=(scenario.aggregator,),
        predicted_loads=len(phases),
        predicted_seconds=0.0,
    )


def plan_for(planner: str, scenario: Scenario, work: Workload, specs, devices: int) -> Plan:
    if planner == "first_seen":
        return first_seen_plan(work.tasks, scenario, devices)
    return make_plan(
        work.tasks,
        specs,
        budget_mb=scenario.budget_mb,
        devices=devices,
        costs={m: model.cost() for m, model in scenario.models.items()},
        output_tokens={m: model.answer_tokens for m, model in scenario.models.items()},
        placement="groups" if planner == "groups" else "work",
    )


def run(plan: Plan, scenario: Scenario, work: Workload, specs, sleep_scale: float = 0.0) -> dict:
    """Run ``plan`` on timed engines; the makespan on the simulated clock, loads, and wall time."""
    engines: list[TimedEngine] = []

    def factory(spec: ExpertSpec) -> TimedEngine:
        engines.append(TimedEngine(spec, scenario.models[spec.name], work, sleep_scale))
        return engines[-1]

    def compose(task: Task, inputs: Mapping[str, Generation]) -> Composed:
        work.prompt[task.id] = sum(g.tokens_out for g in inputs.values()) + COMPOSED_OVERHEAD
        return Composed(request=Request.user(task.id, "Combine the answers."), used=tuple(sorted(inputs)))

    started = time.perf_counter()
    result = Executor(factory).run(plan, work.tasks, specs, compose)
    wall = time.perf_counter() - started
    served = [tid for e in engines for tid in e.served]
    assert not result.failed and sorted(served) == sorted(t.id for t in work.tasks)  # each task once
    where = plan.phase_of()
    busy = [0.0] * len(plan.phases)
    for engine in engines:
        assert engine.served, "an engine loaded for nothing"
        busy[where[engine.served[0]]] += engine.busy
    end = [0.0] * len(plan.phases)
    free = [0.0] * plan.devices
    for phase in plan.phases:
        start = max([free[phase.device], *(end[a] for a in phase.after)])
        end[phase.index] = free[phase.device] = start + busy[phase.index]
    return {
        "makespan_s": round(max(end), 1),
        "predicted_s": round(plan.predicted_seconds, 1) if plan.predicted_seconds else None,
        "loads": result.metrics.loads,
        "replicated": sorted({m for m, n in result.metrics.loads_per_model.items() if n > 1}),
        "loads_per_model": dict(result.metrics.loads_per_model),
        "executor_wall_s": round(wall, 2),
    }


def bound(scenario: Scenario, work: Workload, devices: int) -> float:
    """(all token work + one load of every model) / devices, at least token work / devices + one load."""
    tokens = 0.0
    for task in work.tasks:
        model = scenario.models[task.model]
        tokens += work.output[task.id] / model.tokens_per_s + work.prompt[task.id] / model.prompt_tokens_per_s
    loads = [scenario.models[m].load_s for m in {t.model for t in work.tasks}]
    return max((tokens + sum(loads)) / devices, tokens / devices + min(loads))


def extra_loads(scenario: Scenario, loads: Mapping[str, int], devices: int) -> float:
    """Seconds per device of the loads beyond one per model (replicas), which the bound leaves out."""
    return sum(scenario.models[m].load_s * (n - 1) for m, n in loads.items()) / devices


def measure(scenario: Scenario, seed: int, devices: Sequence[int] = DEVICES) -> dict:
    rng = random.Random(seed)
    work = workload(scenario, rng)
    specs = {
        m: ExpertSpec(
            name=m,
            source={"kind": "vllm", "model": "packaged:x"},
            memory_mb=model.memory_mb,
            sampling={"max_tokens": model.max_tokens},
        )
        for m, model in scenario.models.items()
    }
    rows = []
    for count in devices:
        row: dict = {"devices": count}
        for planner in PLANNERS:
            started = time.perf_counter()
            plan = plan_for(planner, scenario, work, specs, count)
            planned = time.perf_counter() - started
            row[planner] = {**run(plan, scenario, work, specs), "plan_s": round(planned, 2)}
        row["lower_bound_s"] = round(bound(scenario, work, count), 1)  # after a run: aggregation prompts known
        row["work_over_bound"] = round(row["work"]["makespan_s"] / row["lower_bound_s"], 3)
        extra = extra_loads(scenario, row["work"].pop("loads_per_model"), count)
        row["work_gap_s"] = {  # makespan = bound + replicas' loads per device + idle per device
            "replica_loads_per_device": round(extra, 1),
            "idle_per_device": round(row["work"]["makespan_s"] - row["lower_bound_s"] - extra, 1),
        }
        for planner in PLANNERS:
            row[planner].pop("loads_per_model", None)
        row["work_speedup_vs_groups"] = round(row["groups"]["makespan_s"] / row["work"]["makespan_s"], 2)
        row["work_speedup_vs_first_seen"] = round(row["first_seen"]["makespan_s"] / row["work"]["makespan_s"], 2)
        rows.append(row)
        print(line(scenario.name, row), flush=True)
    total = sum(work.routed.values())
    return {
        "note": scenario.note,
        "questions": scenario.questions,
        "experts_per_question": K,
        "budget_mb_per_device": scenario.budget_mb,
        "routing_share": {e: round(n / total, 3) for e, n in sorted(work.routed.items(), key=lambda x: -x[1])},
        "models": {m: vars(model) for m, model in scenario.models.items()},
        "results": rows,
    }


def line(name: str, row: dict) -> str:
    cells = "  ".join(f"{p} {row[p]['makespan_s']:>7.1f} s ({row[p]['loads']:>2} loads)" for p in PLANNERS)
    return (
        f"{name:<14} {row['devices']} device(s): {cells}  bound {row['lower_bound_s']:>7.1f} s  "
        f"work/bound {row['work_over_bound']:.3f}"
    )


def missed(name: str, row: dict) -> str:
    """Where the work placement's makespan goes beyond the bound, in words."""
    work, gap = row["work"], row["work_gap_s"]
    return (
        f"{name}, {row['devices']} devices: {row['work_over_bound']:.3f} x the bound: "
        f"{gap['replica_loads_per_device']} s per device of replicas' loads ({work['loads'] - 17} loads beyond one "
        f"per model; replicated: {', '.join(work['replicated'])}), {gap['idle_per_device']} s per device idle "
        "(uneven stages, and the aggregation stage waiting for every expert)"
    )


def sleep_check(seed: int) -> dict:
    """A small plan on engines that really sleep (1 simulated s = 2 ms), one model per phase:
    the executor's wall time against the simulated makespan."""
    scenario = cpu_scenario(120, random.Random(seed))
    scenario.budget_mb = max(m.memory_mb for m in scenario.models.values())  # one model a phase: no overlap
    work = workload(scenario, random.Random(seed))
    specs = {
        m: ExpertSpec(name=m, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=x.memory_mb)
        for m, x in scenario.models.items()
    }
    scale = 0.002
    plan = plan_for("work", scenario, work, specs, 4)
    got = run(plan, scenario, work, specs, sleep_scale=scale)
    out = {
        "questions": 120,
        "devices": 4,
        "scale_s_per_simulated_s": scale,
        "simulated_makespan_s": got["makespan_s"],
        "expected_wall_s": round(got["makespan_s"] * scale, 3),
        "wall_s": got["executor_wall_s"],
        "loads": got["loads"],
    }
    print(f"sleep check: wall {out['wall_s']:.2f} s, simulated makespan x scale {out['expected_wall_s']:.2f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions-gpu", type=int, default=12032, help="default: MMLU-Pro's test set size")
    parser.add_argument("--questions-gpu-small", type=int, default=2000, help="a smaller batch: loads weigh more")
    parser.add_argument("--questions-cpu", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sleep-check", action="store_true", help="Also run one small plan with real sleeps.")
    parser.add_argument("--write", action="store_true", help=f"Write the figures into {RESULTS.relative_to(ROOT)}.")
    args = parser.parse_args(argv)
    small = gpu_scenario(args.questions_gpu_small, random.Random(args.seed))
    small.name = f"gpu-7-9b-{args.questions_gpu_small}q"
    scenarios = [
        gpu_scenario(args.questions_gpu, random.Random(args.seed)),
        small,
        cpu_scenario(args.questions_cpu, random.Random(args.seed)),
    ]
    results: dict = {
        "benchmark": "placement",
        "machine": "2 CPU cores, shared; engines are timed fakes on a simulated clock, so the figures do not "
        "depend on this machine's speed",
        "how": [" ".join(part.split()) for part in (__doc__ or "").split("\n\n")[1:-1]],
        "sources": SOURCES,
        "assumptions": ASSUMPTIONS,
        "seed": args.seed,
        "target": "work placement within 10% of the lower bound",
        "scenarios": {s.name: measure(s, args.seed) for s in scenarios},
    }
    results["target_met"] = {
        name: {row["devices"]: row["work_over_bound"] <= 1.10 for row in s["results"]}
        for name, s in results["scenarios"].items()
    }
    results["missed"] = [
        missed(name, row)
        for name, s in results["scenarios"].items()
        for row in s["results"]
        if row["work_over_bound"] > 1.10
    ]
    for note in results["missed"]:
        print(note)
    if args.sleep_check:
        results["sleep_check"] = sleep_check(args.seed)
    if args.write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
