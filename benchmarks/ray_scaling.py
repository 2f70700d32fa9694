"""The Ray executor measured: how a plan's wall time falls as its devices become Ray workers, and
what Ray adds to each request against the local executor.

    python benchmarks/ray_scaling.py            # print the figures
    python benchmarks/ray_scaling.py --write    # also write benchmarks/results/ray_scaling.json

1. Scaling. Eight experts, each a fake engine that sleeps a fixed time per token it writes (a
   stand-in for a model whose time goes to generating, not to this machine's CPU), each asked
   the same number of questions. The memory budget holds one expert per device, so a plan on W
   devices runs the experts W at a time; on Ray each device is a bundle of one CPU of a
   placement group on a Ray started here with four logical CPUs (sleeping needs no core), each
   expert an actor started in its bundle. The same plans run on the local executor (one thread
   per device) for comparison.
2. Ray's added time. The same work on one device, Ray against local: the whole run's difference
   per request (actor starts included), and, with an engine that answers at once, the
   difference in generate time per request over a batch of 2,000 (what each request's trip to
   an actor and back costs) and the time to start and load one actor.

The machine is shared and has two cores: figures vary between runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ray_scaling.json"
EXPERTS = 8
TOKENS = 20


def timed_answer(per_token_s: float, spec, request) -> str:
    """A fixed answer of ``TOKENS`` words, written at ``per_token_s`` a token."""
    time.sleep(per_token_s * TOKENS)
    return " ".join(["token"] * (TOKENS - 4)) + " The answer is (A)."


def timed_fake(per_token_s: float, spec, cpus=None):
    from batching import FakeEngine

    return FakeEngine(spec, answer=partial(timed_answer, per_token_s))


def workload(questions: int, experts: int = EXPERTS):
    from batching import ExpertSpec
    from common.requests import Request
    from common.tasks import Task

    specs = {
        f"e{i}": ExpertSpec(name=f"e{i}", source={"kind": "vllm", "model": "packaged:x"}, memory_mb=1000)
        for i in range(experts)
    }
    tasks = [
        Task(id=f"q{q}/{name}", model=name, request=Request.user(f"q{q}/{name}", f"question {q} for {name}?"))
        for name in specs
        for q in range(questions)
    ]
    return tasks, specs


def no_compose(task, inputs):
    raise AssertionError("independent tasks only")


def run(kind: str, factory, tasks, specs, devices: int) -> dict:
    from batching import Executor, RayExecutor, make_plan

    plan = make_plan(tasks, specs, budget_mb=1000, devices=devices)
    executor = RayExecutor(factory) if kind == "ray" else Executor(factory)
    started = time.perf_counter()
    result = executor.run(plan, tasks, specs, no_compose)
    wall = time.perf_counter() - started
    assert not result.failed, result.failed
    m = result.metrics
    return {
        "wall_seconds": round(wall, 3),
        "phases": len(plan.phases),
        "loads": m.loads,
        "load_seconds": round(m.load_seconds, 3),
        "generate_seconds": round(m.generate_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50, help="questions per expert in the scaling part")
    parser.add_argument("--per-token-ms", type=float, default=5.0, help="the timed fake's sleep per token")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()

    import ray

    from batching.ray_cluster import code_path

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", runtime_env=code_path(ROOT))
    try:
        factory = partial(timed_fake, args.per_token_ms / 1000)
        tasks, specs = workload(args.questions)
        scaling: dict[str, dict] = {}
        for workers in (1, 2, 4):
            local = run("local", factory, tasks, specs, workers)
            there = run("ray", factory, tasks, specs, workers)
            scaling[str(workers)] = {"ray": there, "local": local}
            print(f"{workers} worker(s): ray {there['wall_seconds']} s, local {local['wall_seconds']} s")
        one = scaling["1"]["ray"]["wall_seconds"]
        for figures in scaling.values():
            figures["ray_speedup"] = round(one / figures["ray"]["wall_seconds"], 2)
        requests = len(tasks)
        added = (scaling["1"]["ray"]["wall_seconds"] - scaling["1"]["local"]["wall_seconds"]) / requests

        instant = partial(timed_fake, 0.0)
        batch, batch_specs = workload(2000, experts=1)
        quick_local = run("local", instant, batch, batch_specs, 1)
        quick_ray = run("ray", instant, batch, batch_specs, 1)
        trip_ms = (quick_ray["generate_seconds"] - quick_local["generate_seconds"]) / len(batch) * 1000
    finally:
        ray.shutdown()

    result = {
        "machine": f"{platform.machine()}, 2 cores; shared with other work (noisy)",
        "ray": ray.__version__,
        "workload": {
            "experts": EXPERTS,
            "questions_per_expert": args.questions,
            "requests": requests,
            "tokens_per_answer": TOKENS,
            "per_token_ms": args.per_token_ms,
            "sleep_seconds_total": round(requests * TOKENS * args.per_token_ms / 1000, 3),
            "placement": "one expert per device (budget 1000 MB, 1000 MB each); a device is a bundle of 1 CPU "
            "of a placement group on ray.init(num_cpus=4)",
        },
        "scaling": scaling,
        "speedup_2_workers": scaling["2"]["ray_speedup"],
        "speedup_4_workers": scaling["4"]["ray_speedup"],
        "added_seconds_per_request_1_worker": round(added, 4),
        "instant_batch": {
            "requests": len(batch),
            "local": quick_local,
            "ray": quick_ray,
            "trip_ms_per_request": round(trip_ms, 3),
            "actor_start_and_load_seconds": quick_ray["load_seconds"],
        },
    }
    print(
        f"speed-up on Ray: {result['speedup_2_workers']}x at 2 workers, {result['speedup_4_workers']}x at 4; "
        f"Ray adds {added * 1000:.1f} ms per request on one worker (actor starts included); "
        f"a request's trip to an actor and back: {trip_ms:.3f} ms; an actor starts and loads in "
        f"{quick_ray['load_seconds']} s"
    )
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
