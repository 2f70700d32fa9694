"""The generation stores measured: SQLite (the default file) and Redis (a local redis-server).

    python benchmarks/store.py            # print the figures
    python benchmarks/store.py --write    # also write benchmarks/results/store.json

1. Throughput of each store: entries per second written and read, in batches of 100
   (``put_many``/``get_many`` of 100 keys: what the executor does per model batch) and one by
   one. Each entry is an expert's answer of about 900 characters.
2. ``Orchestrator.answer_batch`` of 1,000 MMLU-Pro test questions on the replay pool
   (``pools/replay-small``, policy ``all``: six experts each, ``aggregation="majority"``), with a
   cold cache (an empty store: every generation runs and is written) and a warm one (the same
   call again: every generation is a hit), beside the same call with the cache off. The router
   is built and the questions embedded by an untimed run first, so every timing holds the same
   routing work. A replay engine's generation is itself a lookup in its recordings, so here
   warm can only match off: the figures show what the cache costs (cold - off); what it saves
   on a live model is the whole generation (seconds per answer on this CPU).
3. A durable batch job of as many questions (``coe serve --store ...`` as a child process,
   ``POST /v1/batches``), then the same questions as a second job: cold, then warm.

The machine is shared: other processes run beside it, so figures vary between runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "store.json"
POOL = ROOT / "pools" / "replay-small"
ANSWER = ("Let me think about this step by step. " * 20 + "The answer is (C).").strip()


@contextmanager
def redis_server(folder: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free port (its URL), or None when none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def throughput(target: str) -> dict:
    from common.requests import Generation
    from orchestrator.stores import open_generation_store

    def entries(prefix: str, n: int) -> dict[str, Generation]:
        return {
            f"{prefix}{i:064d}": Generation(
                request_id=f"q{i}/expert/m", model="m", text=ANSWER, tokens_in=310, tokens_out=240, seconds=1.5
            )
            for i in range(n)
        }

    def rate(n: int, work: Callable[[], None]) -> float:
        started = time.perf_counter()
        work()
        return round(n / (time.perf_counter() - started))

    store = open_generation_store(target)
    try:
        batched = entries("b", 20_000)
        keys = list(batched)
        chunks = [keys[i : i + 100] for i in range(0, len(keys), 100)]
        single = entries("s", 1_000)
        out = {
            "set_batch100_per_s": rate(len(keys), lambda: [store.put_many({k: batched[k] for k in c}) for c in chunks]),
            "get_batch100_per_s": rate(len(keys), lambda: [store.get_many(c) for c in chunks]),
            "set_single_per_s": rate(len(single), lambda: [store.put_many({k: g}) for k, g in single.items()]),
            "get_single_per_s": rate(len(single), lambda: [store.get_many([k]) for k in single]),
        }
        assert store.stats.bad_entries == 0 and store.stats.hits == len(keys) + len(single)
        return out
    finally:
        store.close()


def answer_batch(target: str, runs: Path, questions: list) -> dict:
    from eval import load_benchmark
    from orchestrator import Orchestrator, load_settings

    bench = load_benchmark("mmlu_pro")
    base = dict(pool=POOL, runs_dir=runs, store=target, memory_budget_mb=64_000)
    out: dict = {}
    with Orchestrator(load_settings(**base, cache="off")) as off:
        off.answer_batch(questions, benchmark=bench, aggregation="majority")  # router and embeddings, untimed
        started = time.perf_counter()
        off.answer_batch(questions, benchmark=bench, aggregation="majority")
        out["off"] = {"seconds": round(time.perf_counter() - started, 2)}
    with Orchestrator(load_settings(**base, cache="use")) as coe:
        coe.router()
        for label in ("cold", "warm"):
            before = coe.generation_store.stats.snapshot()
            started = time.perf_counter()
            answers = coe.answer_batch(questions, benchmark=bench, aggregation="majority")
            seconds = time.perf_counter() - started
            after = coe.generation_store.stats.snapshot()
            out[label] = {
                "seconds": round(seconds, 2),
                "hits": after["hits"] - before["hits"],
                "written": after["written"] - before["written"],
                "answered": sum(a.error is None for a in answers),
            }
    out["speedup"] = round(out["cold"]["seconds"] / out["warm"]["seconds"], 1)
    return out


def job(target: str, runs: Path, questions: list) -> dict | None:
    """A durable batch job of as many mmlu_pro questions (``POST /v1/batches`` to ``coe serve
    --store TARGET``), then a second job of the same questions: cold, then warm from the cache."""
    from jobs import Served, one_job  # benchmarks/jobs.py: the service as a child process, one job

    served = Served(target, runs)
    try:
        out: dict = {}
        for label in ("cold", "warm"):
            hits = _metric(served.url, "coe_cache_hits_total")
            figures = one_job(served.url, len(questions))
            out[label] = {
                "seconds": figures["wall_s"],
                "questions": figures["questions"],
                "hits": int(_metric(served.url, "coe_cache_hits_total") - hits),
                "accuracy_ours": figures["accuracy_ours"],
            }
    finally:
        served.stop()
    out["speedup"] = round(out["cold"]["seconds"] / out["warm"]["seconds"], 1)
    return out


def _metric(url: str, name: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


PARTS: dict[str, Callable[[str, Path, list], dict | None]] = {"answer_batch": answer_batch, "job": job}
"""Wall-time parts run on each store with the same questions; a new part is one function here."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1_000, help="questions in the answer_batch part")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()

    from eval import load_benchmark
    from orchestrator import load_settings

    questions = load_benchmark("mmlu_pro").questions(load_settings().data_dir, "test")[: args.questions]
    result: dict = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}; shared with other work (noisy)",
        "entry_chars": len(ANSWER),
        "questions": len(questions),
        "pool": "pools/replay-small (policy all, aggregation majority)",
        "stores": {},
    }
    with tempfile.TemporaryDirectory(prefix="coe-store-bench-") as tmp:
        folder = Path(tmp)
        (folder / "redis").mkdir()
        with redis_server(folder / "redis") as url:
            targets = {"sqlite": str(folder / "sqlite" / "store.sqlite"), "redis": url}
            for name, target in targets.items():
                if target is None:
                    print(f"{name}: redis-server is not installed; skipped")
                    continue
                figures = {"throughput": throughput(target)}
                for db, (part, measure) in enumerate(PARTS.items(), start=1):  # each part an empty store
                    fresh = f"{target.rsplit('/', 1)[0]}/{db}" if name == "redis" else str(folder / part / "s.sqlite")
                    figures[part] = measure(fresh, folder / f"runs-{name}-{part}", questions)
                result["stores"][name] = figures
                t, a = figures["throughput"], figures["answer_batch"]
                print(
                    f"{name}: set {t['set_batch100_per_s']}/s get {t['get_batch100_per_s']}/s in batches of 100, "
                    f"set {t['set_single_per_s']}/s get {t['get_single_per_s']}/s one by one; "
                    f"answer_batch of {len(questions)}: off {a['off']['seconds']} s, cold {a['cold']['seconds']} s, "
                    f"warm {a['warm']['seconds']} s "
                    f"({a['warm']['hits']} hits)"
                )
                j = figures["job"]
                if j is not None:
                    print(
                        f"{name}: a job of {j['cold']['questions']}: cold {j['cold']['seconds']} s, "
                        f"warm {j['warm']['seconds']} s ({j['warm']['hits']} hits)"
                    )
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
