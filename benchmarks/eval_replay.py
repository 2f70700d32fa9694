"""``coe eval`` on all of MMLU-Pro with the recorded answers of pools/replay-small: wall time
cold and warm, and every method's accuracy beside the routing benchmark's figures.

    coe eval mmlu_pro --pool pools/replay-small --aggregator majority --baselines [--whole-split]

runs as a user runs it (a child process each time, output in a fresh folder):
- cold: an empty embedding cache (every question embedded) and a fresh process;
- warm: the same command again into a new folder, the embeddings cached.
Both the default run (the evaluation half of the test split, the questions the routing
benchmark reports on) and ``--whole-split`` (all 12,032 questions) are timed. Goal: <= 3 min
cold and <= 30 s warm on the 2-core machine; the default run's accuracies should equal
``benchmarks/results/routing.json``'s.

    python benchmarks/eval_replay.py            # prints the figures
    python benchmarks/eval_replay.py --write    # and writes benchmarks/results/eval_replay.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "eval_replay.json"
ROUTING = ROOT / "benchmarks" / "results" / "routing.json"
COMMAND = ["eval", "mmlu_pro", "--pool", "pools/replay-small", "--aggregator", "majority", "--baselines"]
ROUTING_NAMES = {
    "ours": "all",
    "single-best": "single-best",
    "category": "category",
    "random-k": "random",
    "symbolic": "symbolic",
    "all-majority": "all",
}
"""Method of the eval -> the routing benchmark's policy measured the same way (ours: policy all)."""


def run(extra: Sequence[str], out: Path, cache: Path, runs: Path) -> float:
    env = {**os.environ, "COE_CACHE_DIR": str(cache), "COE_RUNS_DIR": str(runs)}
    argv = [sys.executable, "-m", "orchestrator.cli", *COMMAND, *extra, "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"coe eval failed ({done.returncode}): {done.stderr[-3000:]}")
    return seconds


def accuracies(out: Path) -> dict:
    summary = json.loads((out / "report.json").read_text())
    return {
        m["name"]: {
            "accuracy": m["accuracy"],
            "ci95": m["ci95"],
            "experts_per_question": m["experts_per_question"],
        }
        for m in summary["methods"]
    }


def measure(workdir: Path) -> dict:
    figures: dict = {"command": "coe " + " ".join(COMMAND), "runs": {}}
    for label, extra in (("evaluation_half", []), ("whole_split", ["--whole-split"])):
        cache = workdir / f"cache-{label}"  # empty: no question embedded yet (the pool loads no model)
        cold = run(extra, workdir / f"{label}-cold", cache, workdir / "runs")
        warm = run(extra, workdir / f"{label}-warm", cache, workdir / "runs")
        run_info = json.loads((workdir / f"{label}-warm" / "run.json").read_text())
        figures["runs"][label] = {
            "questions": run_info["questions"],
            "cold_s": round(cold, 1),
            "warm_s": round(warm, 1),
            "warm_stage_seconds": run_info["stage_seconds"],
            "methods": accuracies(workdir / f"{label}-warm"),
        }
        print(f"{label}: {run_info['questions']} questions, cold {cold:.1f} s, warm {warm:.1f} s", flush=True)
    if ROUTING.is_file():
        routing = json.loads(ROUTING.read_text())["policies"]
        methods = figures["runs"]["evaluation_half"]["methods"]
        figures["routing_benchmark"] = {
            name: {"eval": methods[name]["accuracy"], "routing": routing[policy]["accuracy"]}
            for name, policy in ROUTING_NAMES.items()
            if name in methods and policy in routing
        }
    figures["goal"] = {"cold_s": 180, "warm_s": 30}
    return figures


def show(figures: dict) -> None:
    for label, r in figures["runs"].items():
        print(f"\n{label}: {r['questions']} questions; cold {r['cold_s']} s, warm {r['warm_s']} s (goal 180 / 30)")
        print(f"  {'method':<14} {'accuracy':>8}  {'95% interval':<18} experts/q")
        for name, m in r["methods"].items():
            print(f"  {name:<14} {m['accuracy']:>8.4f}  {str(m['ci95']):<18} {m['experts_per_question']:.2f}")
    for name, pair in figures.get("routing_benchmark", {}).items():
        print(f"{name:<14} eval {pair['eval']:.4f}  routing benchmark {pair['routing']:.4f}")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"Write {RESULTS.relative_to(ROOT)}.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval-replay-") as workdir:
        figures = measure(Path(workdir))
    show(figures)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {RESULTS}")
    return figures


if __name__ == "__main__":
    main()
