"""``coe serve`` under load, measured against the SDK in-process.

    python benchmarks/service.py                 # print the figures
    python benchmarks/service.py --write         # also write benchmarks/results/service.json
    python benchmarks/service.py --skip-swaps    # only the replay-pool parts (no vLLM; with
                                                 # --write, the swap figures already written stay)

1. The replay pool (recorded answers of six real models; votes, so no live model): the same
   MMLU-Pro questions asked one at a time in-process (``Orchestrator.answer``) and over HTTP to
   ``coe serve`` started as its own process; the service's added latency is the difference of
   the two at p50 and p99. Then 200 requests at once; then ``--concurrent`` (2,000) new
   questions asked in batches (the rate of new questions, each embedded anew: the service runs
   with empty caches), and the same questions again as that many single requests at once, within
   the queue's bound: every one must come back answered.
2. Over capacity (``_service_load.overload_part``): new questions at twice the rate of new
   questions measured in (1), from two API keys, for ``--overload-s``: 429 over a key's rate limit, 503
   beyond capacity, counted by reason, the answered requests' p99 bounded by the deadline.
3. Memory (``_service_load.memory_part``): the service's RSS over ``--memory-questions`` (20,000)
   distinct questions; flat (within 10%) after the first 2,000.
4. The default pool (real vLLM models) with a memory budget for one model: a mixed stream of
   requests whose routed expert alternates, sent at a steady rate, served with grouping and in
   arrival order (``--fifo``); model swaps counted by the service's /metrics, and the longest
   time a request waited. FIFO swaps once per request, so it is run on the first
   ``--fifo-requests`` of the stream (each swap reloads a model: about 30 s here). These runs
   wait for minutes by design: their queue deadline is an hour.

Every service is started as ``coe serve`` and used once ``/readyz`` says ready; the replay ones
with a memory budget for the recorded experts alone (their vLLM aggregator is unused by votes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time

import httpx
from _served import ROOT, Served, mmlu_questions, quantile
from _service_load import REPLAY, VOTES_ONLY, concurrent_part, fresh, memory_part, overload_part

RESULTS = ROOT / "benchmarks" / "results" / "service.json"
REPLAY_POOL = ROOT / "pools" / "replay-small"
DEFAULT_POOL = ROOT / "pools" / "default"


def replay_part(sequential: int, burst_n: int, concurrent: int) -> dict:
    from orchestrator import Orchestrator, Query

    asked = dict(policy="topk", k=3, aggregation="majority")
    questions = mmlu_questions(sequential)
    sdk: list[float] = []
    queries = [Query(text=q["question"], options=tuple(q["options"]), id=q["id"]) for q in questions]
    with Orchestrator.from_pool(REPLAY_POOL) as coe:
        # untimed: every expert's recordings loaded, every question's embedding cached (for both arms)
        coe.answer_batch(queries, policy="all", aggregation="majority")
        for query in queries:
            started = time.perf_counter()
            coe.answer(query, **asked)
            sdk.append(time.perf_counter() - started)
    cache = tempfile.TemporaryDirectory()
    served = Served(*REPLAY, *VOTES_ONLY, "--gather-ms", "0", env=fresh(cache.name))
    try:
        http: list[float] = []
        with httpx.Client(base_url=served.url, timeout=120) as client:
            warm = {
                "questions": [{"question": q["question"], "options": q["options"], "id": q["id"]} for q in questions]
            }
            client.post(
                "/v1/answer/batch", json={**warm, "policy": "all", "aggregation": "majority"}
            ).raise_for_status()
            for q in questions:
                started = time.perf_counter()
                client.post("/v1/answer", json={**q, **asked}).raise_for_status()
                http.append(time.perf_counter() - started)
        burst = mmlu_questions(burst_n, offset=sequential)
        before = served.metric("coe_batches_total")
        statuses, wall = asyncio.run(_burst(served.url, [{**q, **asked} for q in burst]))
        batches = served.metric("coe_batches_total") - before
        many = concurrent_part(served, concurrent, offset=sequential + burst_n)
        print("concurrent:", json.dumps(many), flush=True)
        ready_s = served.ready_s
    finally:
        served.stop()
        cache.cleanup()
    errors = sum(1 for s in statuses if s != 200)
    return {
        "pool": "replay-small",
        "policy": "topk, k=3, majority vote",
        "sequential_requests": sequential,
        "sdk_p50_ms": round(1000 * quantile(sdk, 0.5), 2),
        "sdk_p99_ms": round(1000 * quantile(sdk, 0.99), 2),
        "service_p50_ms": round(1000 * quantile(http, 0.5), 2),
        "service_p99_ms": round(1000 * quantile(http, 0.99), 2),
        "added_p50_ms": round(1000 * (quantile(http, 0.5) - quantile(sdk, 0.5)), 2),
        "added_p99_ms": round(1000 * (quantile(http, 0.99) - quantile(sdk, 0.99)), 2),
        "requests": len(statuses),
        "errors": errors,
        "concurrent_wall_s": round(wall, 2),
        "concurrent_batches": int(batches),
        "ready_s": round(ready_s, 1),
        "many_at_once": many,
    }


async def _burst(url: str, bodies: list[dict]) -> tuple[list[int], float]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        replies = await asyncio.gather(*(client.post("/v1/answer", json=b) for b in bodies), return_exceptions=True)
        wall = time.perf_counter() - started
    return [r.status_code if isinstance(r, httpx.Response) else -1 for r in replies], wall


def mixed_stream(n: int) -> list[str]:
    """``n`` questions whose routed expert (policy random, k=1, on the default pool) alternates."""
    from orchestrator import Orchestrator

    from_sdk = Orchestrator.from_pool(DEFAULT_POOL)
    by_expert: dict[str, list[str]] = {}
    for q in mmlu_questions(400, offset=2000):
        text = q["question"]
        expert = from_sdk.route(text, policy="random", k=1).expert_names[0]
        by_expert.setdefault(expert, []).append(text)
    groups = [v for _, v in sorted(by_expert.items())]
    if len(groups) < 2:
        raise RuntimeError("the router sent every question to one expert: no mixed stream to measure")
    return [groups[i % 2][i // 2] for i in range(n)]


def swaps_part(stream: list[str], grouping: bool, budget_mb: float, every_s: float) -> dict:
    served = Served(
        "--pool",
        str(DEFAULT_POOL),
        "--memory-budget-mb",
        str(budget_mb),
        "--grouping" if grouping else "--fifo",
        "--gather-ms",
        "200",
        "--queue-timeout-s",
        "3600",
    )
    body = {"policy": "random", "k": 1, "aggregation": "majority"}
    try:

        async def run() -> list[tuple[int, float]]:
            async with httpx.AsyncClient(base_url=served.url, timeout=7200) as client:

                async def one(i: int, text: str) -> tuple[int, float]:
                    await asyncio.sleep(i * every_s)
                    started = time.perf_counter()
                    reply = await client.post("/v1/answer", json={"question": text, **body})
                    return reply.status_code, time.perf_counter() - started

                return await asyncio.gather(*(one(i, t) for i, t in enumerate(stream)))

        started = time.perf_counter()
        replies = asyncio.run(run())
        wall = time.perf_counter() - started
        swaps = served.metric("coe_model_swaps_total")
        loads = served.metric("coe_model_loads_total")
    finally:
        served.stop()
    return {
        "requests": len(stream),
        "errors": sum(1 for status, _ in replies if status != 200),
        "loads": int(loads),
        "swaps": int(swaps),
        "max_wait_s": round(max(seconds for _, seconds in replies), 1),
        "mean_latency_s": round(statistics.fmean(seconds for _, seconds in replies), 1),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/service.json")
    parser.add_argument("--sequential", type=int, default=200, help="questions asked one at a time")
    parser.add_argument("--burst", type=int, default=200, help="requests sent at once (answered questions)")
    parser.add_argument("--concurrent", type=int, default=2000, help="requests of new questions sent at once")
    parser.add_argument("--overload-s", type=float, default=60, help="seconds of the over-capacity stream")
    parser.add_argument("--overload-queue", type=int, default=256, help="max_queue of the over-capacity run")
    parser.add_argument("--overload-timeout-s", type=float, default=10, help="queue_timeout_s of that run")
    parser.add_argument("--memory-questions", type=int, default=20_000, help="distinct questions for the RSS")
    parser.add_argument("--stream", type=int, default=60, help="requests of the mixed stream (grouped)")
    parser.add_argument("--fifo-requests", type=int, default=12, help="first requests of the stream run FIFO")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between requests of the stream")
    parser.add_argument("--skip-swaps", action="store_true", help="only the replay-pool parts")
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    result["replay"] = replay = replay_part(args.sequential, args.burst, args.concurrent)
    print(json.dumps(replay, indent=2), flush=True)
    result.update({k: replay[k] for k in ("requests", "errors", "added_p50_ms", "added_p99_ms")})
    many = replay["many_at_once"]
    result.update({"concurrent_requests": many["requests"], "concurrent_errors": many["errors"]})
    offset = args.sequential + args.burst + args.concurrent
    capacity = many["new_questions_per_s"]
    result["overload"] = over = overload_part(
        capacity, args.overload_s, offset, max_queue=args.overload_queue, timeout_s=args.overload_timeout_s
    )
    print("overload:", json.dumps(over), flush=True)
    refused = over["refused_by_reason"]
    result.update(
        {
            "overload_refused_503": refused["queue_full"] + refused["deadline"],
            "overload_refused_429": refused["rate_limit"],
            "overload_answered_p99_s": over["answered_p99_s"],
        }
    )
    result["memory"] = memory = memory_part(args.memory_questions, every=1000, warm=2000)
    print("memory:", json.dumps(memory), flush=True)
    result.update(
        {
            "memory_questions": memory["questions"],
            "rss_growth_after_warmup_pct": memory["growth_after_warmup_pct"],
            "rss_final_mb": memory["rss_final_mb"],
        }
    )
    result["replay_parts_wall_s"] = round(time.perf_counter() - started, 1)
    if not args.skip_swaps:
        budget = 7500.0  # the larger default model (7,200 MB declared) fits, never both
        stream = mixed_stream(args.stream)
        grouped = swaps_part(stream, True, budget, args.every)
        print("grouped:", json.dumps(grouped))
        fifo = swaps_part(stream[: args.fifo_requests], False, budget, args.every)
        print("fifo:", json.dumps(fifo))
        grouped_same = swaps_part(stream[: args.fifo_requests], True, budget, args.every)
        print("grouped, same requests as fifo:", json.dumps(grouped_same))
        result["swaps"] = {
            "pool": "default, memory budget for one model (7,500 MB)",
            "stream": f"routed expert alternates (policy random, k=1, majority vote), one request every {args.every} s",
            "grouped": grouped,
            "fifo": fifo,
            "grouped_on_fifo_requests": grouped_same,
        }
        result.update(
            {
                "swaps_grouped": grouped["swaps"],
                "swaps_fifo": fifo["swaps"],
                "fifo_requests": fifo["requests"],
                "max_wait_s": grouped["max_wait_s"],
            }
        )
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    if args.write:
        if args.skip_swaps and RESULTS.exists():  # keep the swap figures of the last full run
            kept = json.loads(RESULTS.read_text(encoding="utf-8"))
            result = {**kept, **result}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
