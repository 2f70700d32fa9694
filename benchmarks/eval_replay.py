"""``coe eval`` on MMLU-Pro with the recorded answers of pools/replay-small: wall and CPU time
cold and warm, each stage's seconds, and every method's accuracy beside the routing benchmark's.

    coe eval mmlu_pro --pool pools/replay-small --aggregator majority --baselines [--whole-split]

runs as a user runs it: a child process each time, its output in a fresh folder.

- cold: a fresh process with no generation store or cache (a new runs folder): every
  recorded answer is read from the recordings, every generation written to the store; the
  question embeddings come from the embedding cache the user already has (copied into the
  benchmark's own cache folder; ``--from-scratch`` embeds them first, timed apart as
  ``embed_cold_s``, the exported encoder included);
- warm: the same command again into a new output folder, the generations and embeddings cached.

Each kind of run is made ``--repeat`` times (default 3); the figures are the median run's (by
wall time), every run's wall and CPU seconds kept beside them (the machine is shared: a run's
wall time depends on what else runs; its CPU time much less).

``whole`` is the whole test split (``--whole-split``, 12,032 questions), ``evaluation_half``
the questions the routing benchmark reports on (the default run). Goal: the whole split in
<= 90 s cold and <= 15 s warm on the 2-core machine; the evaluation half's accuracies should
equal ``benchmarks/results/routing.json``'s. ``--baseline DIR``: another checkout of the
project measured the same way in the same run, each of its runs beside ours (the machine is
shared and noisy), with a check that both wrote the same ``results.jsonl`` and, but for the
run's own fields (times, id, command), the same ``report.json``.

    python benchmarks/eval_replay.py            # prints the figures
    python benchmarks/eval_replay.py --write    # and writes benchmarks/results/eval_replay.json
    python benchmarks/eval_replay.py --baseline /tmp/main-checkout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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
PARTS = {"whole": ["--whole-split"], "evaluation_half": []}
RUN_OWN = {"stage_seconds", "run_id", "started", "finished", "command"}
"""report.json's fields that belong to one run, not to its results."""
ROUTING_NAMES = {
    "ours": "all",
    "single-best": "single-best",
    "category": "category",
    "random-k": "random",
    "symbolic": "symbolic",
    "all-majority": "all",
}
"""Method of the eval -> the routing benchmark's policy measured the same way (ours: policy all)."""


def run(code: Path, extra: Sequence[str], out: Path, cache: Path, runs: Path) -> dict:
    """One ``coe eval`` of the checkout ``code`` in a child process (on this checkout's data):
    wall and CPU seconds, and its run.json's stage seconds."""
    from orchestrator.pools.settings import load_settings

    env = {
        **os.environ,
        "COE_CACHE_DIR": str(cache),
        "COE_RUNS_DIR": str(runs),
        "COE_DATA_DIR": str(load_settings().data_dir),
        "PYTHONPATH": str(code),
    }
    env.pop("COE_STORE", None)
    argv = [sys.executable, "-m", "orchestrator.cli", *COMMAND, *extra, "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"coe eval failed ({done.returncode}): {done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages = json.loads((out / "run.json").read_text())["stage_seconds"]
    return {"s": round(seconds, 1), "cpu_s": round(cpu, 1), "stage_seconds": stages}


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


def same_results(a: Path, b: Path) -> bool:
    """Both runs wrote the same results.jsonl, byte for byte, and the same report.json but for
    the run's own fields."""

    def report(out: Path) -> object:
        return _without(json.loads((out / "report.json").read_text()), RUN_OWN)

    return (a / "results.jsonl").read_bytes() == (b / "results.jsonl").read_bytes() and report(a) == report(b)


def _without(value: object, keys: set[str]) -> object:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def prepare(workdir: Path, code: Path, from_scratch: bool) -> tuple[Path, dict]:
    """The embedding cache the runs share, and how it was filled."""
    from orchestrator.pools.settings import load_settings

    users = load_settings().embeddings_dir
    cache = workdir / "cache"
    (cache / "embeddings").mkdir(parents=True)
    if from_scratch or not users.is_dir():
        print("embedding every question first (no embedding cached)", flush=True)
        timed = run(code, PARTS["whole"], workdir / "embed-cold", cache, workdir / "runs-embed")
        return cache, {"embeddings": "embedded by a first cold run", "embed_cold": timed}
    for path in users.glob("*.sqlite3"):
        shutil.copy2(path, cache / "embeddings" / path.name)
    return cache, {"embeddings": f"copied from {users} (the user's embedding cache)"}


def measure(workdir: Path, baseline: Path | None, from_scratch: bool, repeat: int) -> dict:
    cache, how = prepare(workdir, ROOT, from_scratch)
    figures: dict = {"command": "coe " + " ".join(COMMAND), "repeat": repeat, **how}
    sides = {"ours": ROOT, **({"baseline": baseline} if baseline is not None else {})}
    for part, extra in PARTS.items():
        outs: dict[tuple[str, str, int], Path] = {}
        timings: dict[tuple[str, str], list[dict]] = {}
        for phase in ("cold", "warm"):
            for n in range(repeat):
                for side, code in sides.items():  # side by side: each run of the baseline beside ours
                    # a cold run starts a new runs folder (no store, no cache); the warm runs read the last one's
                    runs = workdir / f"runs-{part}-{side}-{n if phase == 'cold' else repeat - 1}"
                    out = outs[side, phase, n] = workdir / f"{part}-{side}-{phase}-{n}"
                    timed = run(code, extra, out, cache, runs)
                    timings.setdefault((side, phase), []).append(timed)
                    print(f"{part} {side} {phase} {n + 1}/{repeat}: {timed}", flush=True)
        for side in sides:
            entry: dict = {"questions": json.loads((outs[side, "warm", 0] / "run.json").read_text())["questions"]}
            for phase in ("cold", "warm"):
                runs_of = sorted(timings[side, phase], key=lambda t: t["s"])
                middle = runs_of[len(runs_of) // 2]  # the median run, by wall time
                entry[f"{phase}_s"] = middle["s"]
                entry[f"{phase}_cpu_s"] = middle["cpu_s"]
                entry[f"{phase}_stage_seconds"] = middle["stage_seconds"]
                entry[f"{phase}_runs_s"] = [t["s"] for t in timings[side, phase]]
                entry[f"{phase}_runs_cpu_s"] = [t["cpu_s"] for t in timings[side, phase]]
            entry["methods"] = accuracies(outs[side, "warm", 0])
            if side == "ours":
                figures[part] = entry
            else:
                figures.setdefault("baseline", {"root": str(baseline)})[part] = entry
        if baseline is not None:
            figures["baseline"][f"{part}_same_results"] = all(
                same_results(outs["ours", phase, n], outs["baseline", phase, n])
                for phase in ("cold", "warm")
                for n in range(repeat)
            )
    if ROUTING.is_file():
        routing = json.loads(ROUTING.read_text())["policies"]
        methods = figures["evaluation_half"]["methods"]
        figures["routing_benchmark"] = {
            name: {"eval": methods[name]["accuracy"], "routing": routing[policy]["accuracy"]}
            for name, policy in ROUTING_NAMES.items()
            if name in methods and policy in routing
        }
    figures["goal"] = {"whole_cold_s": 90, "whole_warm_s": 15}
    figures["load_average"] = [round(x, 1) for x in os.getloadavg()]
    return figures


def show(figures: dict) -> None:
    for part in PARTS:
        r = figures[part]
        print(
            f"\n{part}: {r['questions']} questions; cold {r['cold_s']} s ({r['cold_cpu_s']} s CPU), "
            f"warm {r['warm_s']} s ({r['warm_cpu_s']} s CPU); medians of {r['cold_runs_s']} and {r['warm_runs_s']}"
        )
        print(f"  cold stages {r['cold_stage_seconds']}\n  warm stages {r['warm_stage_seconds']}")
        print(f"  {'method':<14} {'accuracy':>8}  {'95% interval':<18} experts/q")
        for name, m in r["methods"].items():
            print(f"  {name:<14} {m['accuracy']:>8.4f}  {str(m['ci95']):<18} {m['experts_per_question']:.2f}")
        base = figures.get("baseline", {}).get(part)
        if base is not None:
            same = figures["baseline"][f"{part}_same_results"]
            print(
                f"  baseline: cold {base['cold_s']} s ({base['cold_cpu_s']} s CPU), warm {base['warm_s']} s "
                f"({base['warm_cpu_s']} s CPU); same results: {same}"
            )
    whole = figures["whole"]
    print(f"\nwhole split: cold {whole['cold_s']} s (goal 90), warm {whole['warm_s']} s (goal 15)")
    for name, pair in figures.get("routing_benchmark", {}).items():
        print(f"{name:<14} eval {pair['eval']:.4f}  routing benchmark {pair['routing']:.4f}")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"Write {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--baseline", type=Path, help="Another checkout, measured beside this one.")
    parser.add_argument("--from-scratch", action="store_true", help="Embed the questions first, timed apart.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each kind; the median is reported.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval-replay-") as workdir:
        figures = measure(
            Path(workdir), args.baseline.resolve() if args.baseline else None, args.from_scratch, args.repeat
        )
    show(figures)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {RESULTS}")
    return figures


if __name__ == "__main__":
    main()
