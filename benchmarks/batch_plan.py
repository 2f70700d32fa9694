"""Batch planning schemes on the same instances: loads, wall time, and our orchestration overhead.

Instances: MMLU-Pro test questions (``eval.splits.sample``, seeded), each routed to k=2 experts
by the SDK's ``random`` policy, plus one aggregation per question: the task graph is the
product's own (``Orchestrator.tasks``: the tasks and synthesis jobs ``answer_batch`` would run).
Schemes, all run by the same Executor so only the schedule differs:

    planner     batching.plan.make_plan: each model loaded once, aggregator last, co-residence
                under the memory budget
    naive       per question: load the models it needs (aggregator included), generate, unload
    first_seen  Symbolic-MoE's order: one group per expert in first-seen order, then a separate
                load of the aggregator at the end (without its 10 s sleeps)

``overhead_ratio`` (planner) = planner wall time / pure engine time for the same prompts run
directly on fresh engines (each model: load, the same generate calls, unload; nothing else).

Engines: ``replay`` = pools/replay-small's six recorded experts; the aggregator is the replay of
Meta-Llama-3_1-8B-Instruct (also an expert; replay cannot write new text, so it returns that
model's recorded answer: a systems figure, not a quality one). The recordings are indexed once
before any scheme runs, so replay loads are lookups. ``vllm`` = pools/default (SmolLM2 + Gemma-3,
aggregator SmolLM2) on real vLLM; naive runs on a few instances and is extrapolated per instance.

    python benchmarks/batch_plan.py --engine replay
    python benchmarks/batch_plan.py --engine vllm [--naive-instances 3 --max-tokens 32]

Prints the figures; with ``--write`` also writes them into benchmarks/results/batch_plan.json
(keeping the other engine's part).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aggregators import SynthesisJob, SynthesisOptions, compose
from batching.engines import Engine
from batching.executor import Executor, RunResult
from batching.plan import Phase, Plan, make_plan
from batching.spec import ExpertSpec, ReplaySource
from common.recordings import replay_book
from common.requests import Generation, Request
from common.tasks import Task
from eval import Question, get_benchmark, sample
from orchestrator import Orchestrator, Pool, Settings, load_pool, load_settings

log = logging.getLogger("benchmarks.batch_plan")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "batch_plan.json"
REPLAY_AGGREGATOR = "meta-llama-3_1-8b-instruct"


class Recording:
    """Wraps an engine and keeps the request lists it was asked to generate."""

    def __init__(self, engine: Engine, calls: list[tuple[str, list[Request]]]) -> None:
        self.engine, self.spec, self.calls = engine, engine.spec, calls

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    def load(self) -> None:
        self.engine.load()

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.calls.append((self.spec.name, list(requests)))
        return self.engine.generate(requests)

    def unload(self) -> None:
        self.engine.unload()

    def footprint_mb(self) -> float | None:
        return self.engine.footprint_mb()


def bench_pool(pool: Pool, *, aggregator: str | None, max_tokens: int | None) -> Pool:
    """``pool`` with another aggregator (if given) and every model's answers capped at ``max_tokens``."""
    models = pool.models
    if max_tokens is not None:
        models = tuple(
            m.model_copy(update={"sampling": m.sampling.model_copy(update={"max_tokens": max_tokens})}) for m in models
        )
    header = pool.pool.model_copy(update={"aggregator": aggregator}) if aggregator else pool.pool
    return pool.model_copy(update={"pool": header, "models": models})


def instances(
    coe: Orchestrator, questions: Sequence[Question], *, k: int
) -> tuple[list[Task], dict[str, SynthesisJob]]:
    """The product's task graph: k experts per question (the ``random`` policy), then one
    synthesis task per question."""
    return coe.tasks(questions, benchmark=get_benchmark("mmlu_pro"), policy="random", k=k)


def first_seen_plan(tasks: Sequence[Task], aggregator: str, budget_mb: float) -> Plan:
    """Symbolic-MoE's schedule: expert groups in first-seen order, then the aggregator again."""
    groups: dict[str, list[str]] = {}
    finals = []
    for task in tasks:
        if task.after:
            finals.append(task.id)
        else:
            groups.setdefault(task.model, []).append(task.id)
    parts = [*((m, ids, 0) for m, ids in groups.items()), (aggregator, finals, len(finals))]
    phases = tuple(
        Phase(
            index=i,
            device=0,
            models=(m,),
            tasks=tuple(ids),
            requests={m: len(ids)},
            composed={m: agg},
            memory_mb=0.0,
            predicted_start=0.0,
            predicted_seconds=0.0,
        )
        for i, (m, ids, agg) in enumerate(parts)
    )
    return Plan(
        phases=phases,
        devices=1,
        budget_mb=budget_mb,
        aggregators=(aggregator,),
        predicted_loads=len(phases),
        predicted_seconds=0.0,
    )


def run(plan: Plan, tasks, specs, factory, jobs, max_tokens) -> RunResult:
    composer = compose(jobs, SynthesisOptions(max_tokens=max_tokens, order="given"))
    return Executor(factory).run(plan, tasks, specs, composer)


def summary(result: RunResult, instances_run: int) -> dict:
    m = result.metrics
    return {
        "loads": m.loads,
        "wall_s": round(m.wall_seconds, 3),
        "requests": sum(m.requests_per_model.values()),
        "load_s": round(m.load_seconds, 3),
        "generate_s": round(m.generate_seconds, 3),
        "unload_s": round(m.unload_seconds, 3),
        "overhead_s": round(m.overhead_seconds, 3),
        "failed": m.failed,
        "instances": instances_run,
    }


def direct_seconds(calls: list[tuple[str, list[Request]]], specs, make: Callable[[ExpertSpec], Engine]) -> dict:
    """Pure engine time for the same generate calls: per model, load, its calls in order, unload."""
    by_model: dict[str, list[list[Request]]] = {}
    for name, requests in calls:
        by_model.setdefault(name, []).append(requests)
    load = generate = unload = 0.0
    for name, batches in by_model.items():
        engine = make(specs[name])
        t0 = time.perf_counter()
        engine.load()
        t1 = time.perf_counter()
        for requests in batches:
            engine.generate(requests)
        t2 = time.perf_counter()
        engine.unload()
        t3 = time.perf_counter()
        load, generate, unload = load + t1 - t0, generate + t2 - t1, unload + t3 - t2
    return {
        "load_s": round(load, 3),
        "generate_s": round(generate, 3),
        "unload_s": round(unload, 3),
        "total_s": round(load + generate + unload, 3),
    }


def save(engine_kind: str, part: dict, out: Path) -> None:
    """Write one engine's part into the results file, keeping the other engine's."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results[engine_kind] = part
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def measure(engine_kind: str, coe: Orchestrator, questions: Sequence[Question], args) -> dict:
    tasks, jobs = instances(coe, questions, k=args.k)
    specs, make = coe.pool.specs, coe.engine_factory
    aggregator = coe.pool.aggregator.name
    out: dict = {}

    calls: list[tuple[str, list[Request]]] = []
    plan = make_plan(tasks, specs, budget_mb=args.budget_mb)
    print(plan.render())
    planned = run(plan, tasks, specs, lambda s: Recording(make(s), calls), jobs, args.max_tokens)
    out["planner"] = summary(planned, len(questions))
    direct = direct_seconds(calls, specs, make)
    out["planner"].update(
        distinct_models=len({t.model for t in tasks}),
        predicted_loads=plan.predicted_loads,
        phases=len(plan.phases),
        generate_calls=planned.metrics.generate_calls,
        direct_engine=direct,
        overhead_ratio=round(planned.metrics.wall_seconds / direct["total_s"], 4),
        overhead_ms_per_request=round(
            1000 * (planned.metrics.wall_seconds - direct["total_s"]) / max(1, len(tasks)), 4
        ),
    )

    if args.write:
        save(engine_kind, {**out, "partial": True}, args.out)
    first = run(first_seen_plan(tasks, aggregator, args.budget_mb), tasks, specs, make, jobs, args.max_tokens)
    out["first_seen"] = summary(first, len(questions))
    if args.write:
        save(engine_kind, {**out, "partial": True}, args.out)

    naive_n = min(args.naive_instances or len(questions), len(questions))
    loads = walls = requests = failed = 0
    exact_loads = 0
    for index, q in enumerate(questions):
        q_tasks = [t for t in tasks if t.id.startswith(f"{q.id}/")]
        exact_loads += len({t.model for t in q_tasks})
        if index >= naive_n:
            continue
        result = run(
            make_plan(q_tasks, specs, budget_mb=args.budget_mb),
            q_tasks,
            specs,
            make,
            {t.id: jobs[t.id] for t in q_tasks if t.after},
            args.max_tokens,
        )
        loads += result.metrics.loads
        walls += result.metrics.wall_seconds
        requests += sum(result.metrics.requests_per_model.values())
        failed += result.metrics.failed
    scale = len(questions) / naive_n
    out["naive"] = {
        "loads": exact_loads,
        "wall_s": round(walls * scale, 3),
        "requests": round(requests * scale),
        "failed": failed,
        "instances": len(questions),
        "measured_instances": naive_n,
        "measured_loads": loads,
        "measured_wall_s": round(walls, 3),
        "extrapolated": naive_n < len(questions),
    }
    if naive_n < len(questions):
        out["naive"]["note"] = (
            f"measured on the first {naive_n} instances; wall_s and requests scaled by {scale:g}; "
            "loads counted exactly from each instance's models"
        )
    return out


def replay_part(args, settings: Settings) -> dict:
    pool = load_pool(ROOT / "pools" / "replay-small", settings.data_dir)
    pool = bench_pool(pool, aggregator=REPLAY_AGGREGATOR, max_tokens=args.max_tokens)
    coe = Orchestrator(settings, pool=pool)
    experts = pool.expert_names
    specs = pool.specs
    source = specs[REPLAY_AGGREGATOR].source
    assert isinstance(source, ReplaySource)
    book = replay_book(source.path)
    t0 = time.perf_counter()
    book.load([specs[n].source.model for n in experts])
    index_s = time.perf_counter() - t0
    recorded = set.intersection(*(set(book.records(specs[n].source.model)) for n in experts))
    questions = [q for q in get_benchmark("mmlu_pro").questions(settings.data_dir) if q.id in recorded]
    drawn = sample(questions, args.questions, args.seed)
    out = measure("replay", coe, drawn, args)
    out["setup"] = {
        "pool": "pools/replay-small (6 recorded experts)",
        "aggregator": f"replay of {source.model} (also an expert; returns its recorded answer)",
        "index_recordings_s": round(index_s, 2),
        "note": (
            "recordings indexed once before the schemes, so replay loads are lookups and the whole "
            "engine time is a few milliseconds: overhead_ratio compares milliseconds here (see "
            "overhead_ms_per_request); the loads are the figure that carries over to real engines"
        ),
        "questions": len(drawn),
        "k": args.k,
        "budget_mb": args.budget_mb,
    }
    return out


def vllm_part(args, settings: Settings) -> dict:
    pool = bench_pool(
        load_pool(ROOT / "pools" / "default", settings.data_dir), aggregator=None, max_tokens=args.max_tokens
    )
    coe = Orchestrator(settings, pool=pool)
    questions = sample(get_benchmark("mmlu_pro").questions(settings.data_dir), args.questions, args.seed)
    out = measure("vllm", coe, questions, args)
    out["setup"] = {
        "pool": "pools/default (smollm2 + gemma3, real vLLM on this CPU)",
        "aggregator": pool.pool.aggregator,
        "questions": len(questions),
        "k": args.k,
        "max_tokens": args.max_tokens,
        "budget_mb": args.budget_mb,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["replay", "vllm"], required=True)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the question sample.")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--budget-mb", type=float, default=None, help="default: 8000 for vllm (one model at a time), 3000 for replay"
    )
    parser.add_argument("--naive-instances", type=int, default=None, help="default: all (replay), 3 (vllm)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--write", action="store_true", help=f"Write the figures into {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where --write writes.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    # vllm: room for either default model (4000 / 7200 MB measured) but not both: one at a time
    args.budget_mb = args.budget_mb or (8000.0 if args.engine == "vllm" else 3000.0)
    if args.engine == "vllm" and args.naive_instances is None:
        args.naive_instances = 3
    settings = load_settings(cache_dir=args.cache_dir, memory_budget_mb=args.budget_mb)
    part = replay_part(args, settings) if args.engine == "replay" else vllm_part(args, settings)
    if args.write:
        save(args.engine, part, args.out)
    print(json.dumps({args.engine: part}, indent=2))
    p = part["planner"]
    print(
        f"{args.engine}: planner {p['loads']} loads (distinct models {p['distinct_models']}), "
        f"first_seen {part['first_seen']['loads']}, naive {part['naive']['loads']}; "
        f"overhead ratio {p['overhead_ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
