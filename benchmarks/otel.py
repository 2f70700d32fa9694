"""What OpenTelemetry tracing costs a request of ``coe serve``.

    python benchmarks/otel.py            # print the figures
    python benchmarks/otel.py --write    # also write benchmarks/results/otel.json

The replay pool (recorded answers of six real models; top-3 by majority vote, so no live model)
served by a real uvicorn server in this process, asked the same MMLU-Pro questions one at a
time over HTTP in three modes, interleaved round by round in a shuffled order (the machine is
shared and noisy, so every mode sees the same drift):

- ``off``: the tracing helpers (``common.tracing``) replaced by stand-ins that do nothing, the
  code as if it had no instrumentation;
- ``unconfigured``: the code as it ships, with nothing configured (no provider: what every
  user who sets no ``OTEL_*`` variable runs);
- ``in_memory``: the SDK's tracer provider with a batch span processor (what ``configure()``
  installs; its queue made large enough to drop no span) exporting to the SDK's in-memory
  exporter.

Each mode's figure is the median request latency per round; the added cost is the median over
rounds of a mode's round median minus ``off``'s of the same round, and the median of the paired
differences (the same question in the same round) with its 95% bootstrap interval. A second part
times the span helper alone (enter and leave one span, nanoseconds) in each mode, and counts the
spans one request makes when traced.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "otel.json"
MODES = ("off", "unconfigured", "in_memory")
ASKED = {"policy": "topk", "k": 3, "aggregation": "majority"}


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


STAND_INS: dict[str, Callable[..., Any]] = {
    "tracer": _nothing,
    "span": lambda *args, **kwargs: nullcontext(None),
    "start": _nothing,
    "end": _nothing,
    "note": _nothing,
    "here": _nothing,
    "link": _nothing,
    "current_span": _nothing,
    "trace_id": _nothing,
    "traceresponse": _nothing,
    "carried": lambda fn, *args: functools.partial(fn, *args),
}
"""``off``: every helper of ``common.tracing`` the code calls, doing nothing."""


@contextmanager
def mode(name: str) -> Iterator[Any]:
    """Run the block in one mode; yields the in-memory exporter in ``in_memory``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from common import tracing

    if name == "unconfigured":
        yield None
    elif name == "off":
        kept = {key: getattr(tracing, key) for key in STAND_INS}
        for key, stand_in in STAND_INS.items():
            setattr(tracing, key, stand_in)
        try:
            yield None
        finally:
            for key, value in kept.items():
                setattr(tracing, key, value)
    else:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1_000_000))  # drop no span
        tracing.provide(provider)
        try:
            yield exporter
        finally:
            tracing.provide(None)
            provider.force_flush()
            provider.shutdown()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def questions(n: int) -> list[dict[str, Any]]:
    from eval import load_benchmark
    from orchestrator import load_settings

    items = load_benchmark("mmlu_pro").questions(load_settings().data_dir, "test")[:n]
    return [{"question": q.text, "options": list(q.options), "id": q.id, **ASKED} for q in items]


def requests_part(rounds: int, per_round: int, seed: int) -> dict[str, Any]:
    from orchestrator import load_settings
    from orchestrator.pools.settings import shipped_pool
    from orchestrator.service import ServiceSettings, create_app

    core = load_settings(pool=shipped_pool("replay-small"), cache="off")
    # lazy: the warm-up would load the pool's live aggregator, which votes never need
    app = create_app(ServiceSettings(core=core, gather_ms=0, lazy=True))
    asked = questions(per_round)
    per_mode: dict[str, list[float]] = {m: [] for m in MODES}  # request i of round r at r * per_round + i
    medians: dict[str, list[float]] = {m: [] for m in MODES}
    spans_per_request: list[float] = []
    order = list(MODES)
    shuffle = random.Random(seed).shuffle
    with serving(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        for body in asked:  # untimed: recordings read, embeddings cached, every path warm
            reply = client.post("/v1/answer", json=body)
            if reply.status_code != 200:
                raise RuntimeError(f"{reply.status_code}: {reply.text[:500]}")
        for _ in range(rounds):
            shuffle(order)
            for name in order:
                with mode(name) as exporter:
                    times = []
                    for body in asked:
                        started = time.perf_counter()
                        client.post("/v1/answer", json=body).raise_for_status()
                        times.append(time.perf_counter() - started)
                if exporter is not None:
                    spans_per_request.append(len(exporter.get_finished_spans()) / len(asked))
                per_mode[name] += times
                medians[name].append(statistics.median(times))
    out: dict[str, Any] = {
        "pool": "replay-small",
        "asked": "topk, k=3, majority vote; one request at a time over HTTP",
        "rounds": rounds,
        "requests_per_round": per_round,
        "spans_per_request": round(statistics.mean(spans_per_request), 1),
    }
    for name in MODES:
        values = sorted(per_mode[name])
        out[name] = {
            "requests": len(values),
            "p50_ms": round(1000 * statistics.median(values), 3),
            "p90_ms": round(1000 * values[int(0.9 * (len(values) - 1))], 3),
        }
        if name != "off":
            added = [a - b for a, b in zip(medians[name], medians["off"], strict=True)]
            out[name]["added_ms"] = round(1000 * statistics.median(added), 3)
            out[name]["added_ms_rounds_range"] = [round(1000 * min(added), 3), round(1000 * max(added), 3)]
            paired = [a - b for a, b in zip(per_mode[name], per_mode["off"], strict=True)]
            low, high = bootstrap_median(paired, seed)
            out[name]["added_ms_paired_median"] = round(1000 * statistics.median(paired), 3)
            out[name]["added_ms_paired_ci95"] = [round(1000 * low, 3), round(1000 * high, 3)]
            out[name]["added_share"] = round(statistics.median(added) / statistics.median(medians["off"]), 4)
    return out


def bootstrap_median(values: list[float], seed: int, draws: int = 2_000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``values``."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def span_part(calls: int) -> dict[str, float]:
    """Nanoseconds to enter and leave one span with two attributes (the fastest of 7 runs: the
    machine's noise only ever adds)."""
    from common import tracing

    out = {}
    for name in MODES:
        with mode(name):
            runs = []
            for _ in range(7):
                started = time.perf_counter_ns()
                for _ in range(calls):
                    with tracing.span("coe.bench", {"coe.model": "m", "coe.requests": 1}):
                        pass
                runs.append((time.perf_counter_ns() - started) / calls)
            out[name] = round(min(runs), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=30)
    parser.add_argument("--span-calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    result = {
        "machine": f"{platform.machine()}, {len_cores()} cores",
        "requests": requests_part(args.rounds, args.per_round, args.seed),
        "span_ns": span_part(args.span_calls),
    }
    print(json.dumps(result, indent=2))
    if args.write:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


def len_cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
