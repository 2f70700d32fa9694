"""Start time, throughput and memory of the vLLM engine, eager against compiled, per default model.

For each model and each mode (``eager``: ``enforce_eager=True``, the pools' default;
``compiled``: ``enforce_eager=False``, vLLM compiles the model at load), a lone engine bound
to every core loads with ``VLLMEngine`` (a child process), generates one batch of 32 short
prompts with up to 128 new tokens each (SmolLM2 as chats, Gemma-3-270M, a base model, as
completion prompts), and unloads. Reported per model and mode:

    start_s               load() wall time (child start, vLLM start, compile if any, model load)
    tokens_per_s          new tokens of the whole batch / its wall time
    rss_before_mb         system used memory before load (psutil.virtual_memory().used)
    rss_loaded_mb         system used memory while loaded
    rss_after_unload_mb   system used memory after unload
    child_rss_mb          resident memory of the engine's child process tree (footprint_mb)
    parent_rss_*_mb       this process's own RSS before load and after unload

and per model, ``break_even_tokens``: how many generated tokens (at this batch's speed) repay
the compiled mode's longer start; null when compiled is not faster.

    .venv/bin/python benchmarks/engines.py [--models smollm2,gemma3] [--modes eager,compiled]
                                           [--max-tokens 128] [--write]

Prints the figures; ``--write`` also writes benchmarks/results/engines.json (``models`` holds
the eager rows, the default, under the keys the README quotes; ``compiled`` the others). Other
work may share the CPU; the load average at start and end is recorded in ``note``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


MB = 2**20

TOPICS = [
    "the water cycle", "photosynthesis", "the moon", "volcanoes", "honey bees", "rainbows",
    "the heart", "tides", "snowflakes", "electric circuits", "the Roman empire", "bread baking",
    "gravity", "coral reefs", "the printing press", "sound waves", "deserts", "comets",
    "vaccines", "glaciers", "the internet", "magnets", "clouds", "bicycles",
    "earthquakes", "penguins", "chess", "the alphabet", "wind turbines", "mushrooms",
    "lighthouses", "the Nile",
]  # fmt: skip

MODELS = {
    "smollm2": ("packaged:smollm2-135m-instruct", "chat"),
    "gemma3": ("packaged:gemma3-270m", "completion"),
}
MODES = {"eager": True, "compiled": False}  # mode -> enforce_eager


def used_mb() -> float:
    import psutil

    return psutil.virtual_memory().used / MB


def parent_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def measure(name: str, mode: str, cache_dir: Path, max_tokens: int) -> dict:
    from batching.engines.vllm_engine import VLLMEngine
    from batching.spec import ExpertSpec
    from common.requests import Request

    model, prompt_mode = MODELS[name]
    spec = ExpertSpec(
        name=name,
        source={"kind": "vllm", "model": model, "enforce_eager": MODES[mode]},
        prompt_mode=prompt_mode,
        sampling={"max_tokens": max_tokens},
    )
    requests = [Request.user(f"{name}-{i}", f"Explain {topic} to a ten-year-old.") for i, topic in enumerate(TOPICS)]
    engine = VLLMEngine(spec, cache_dir=cache_dir)  # cpus=None: a lone engine binds every core
    row: dict = {
        "model": model,
        "mode": mode,
        "prompt_mode": prompt_mode,
        "requests": len(requests),
        "max_tokens": max_tokens,
    }
    row["cores"] = len(os.sched_getaffinity(0))
    row["rss_before_mb"], row["parent_rss_before_mb"] = used_mb(), parent_rss_mb()
    started = time.monotonic()
    engine.load()
    try:
        row["start_s"] = time.monotonic() - started
        row["rss_loaded_mb"], row["child_rss_mb"] = used_mb(), engine.footprint_mb()
        started = time.monotonic()
        generations = engine.generate(requests)
        wall = time.monotonic() - started
    finally:
        engine.unload()
    time.sleep(2.0)  # let the kernel account the freed pages
    row["rss_after_unload_mb"], row["parent_rss_after_mb"] = used_mb(), parent_rss_mb()
    failed = [g.error for g in generations if not g.ok]
    if failed:
        raise SystemExit(f"{name} ({mode}): {len(failed)} generation(s) failed: {failed[0]}")
    row["tokens_out"] = sum(g.tokens_out for g in generations)
    row["tokens_in"] = sum(g.tokens_in for g in generations)
    row["generate_s"] = wall
    row["tokens_per_s"] = row["tokens_out"] / wall
    row["sample"] = generations[0].text[:160]
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


def break_even_tokens(eager: dict, compiled: dict) -> int | None:
    """Generated tokens after which compiling has paid for its longer start."""
    saved_per_token = 1 / eager["tokens_per_s"] - 1 / compiled["tokens_per_s"]
    if saved_per_token <= 0:
        return None
    return round(max(0.0, compiled["start_s"] - eager["start_s"]) / saved_per_token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="write the results file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from orchestrator import load_settings

    cache_dir = load_settings(cache_dir=args.cache_dir).cache_dir
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for value, known, what in ((names, MODELS, "model"), (modes, MODES, "mode")):
        unknown = [v for v in value if v not in known]
        if unknown:
            raise SystemExit(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, dict]] = {mode: {} for mode in modes}
    for name in names:
        for mode in modes:
            row = results[mode][name] = measure(name, mode, cache_dir, args.max_tokens)
            print(
                f"{name:8s} {mode:8s} start {row['start_s']:6.1f}s  {row['tokens_per_s']:6.1f} tok/s "
                f"({row['tokens_out']} tokens in {row['generate_s']:.1f}s)  used MB before/loaded/after "
                f"{row['rss_before_mb']:.0f}/{row['rss_loaded_mb']:.0f}/{row['rss_after_unload_mb']:.0f}  "
                f"child {row['child_rss_mb']:.0f} MB  "
                f"parent RSS {row['parent_rss_before_mb']:.0f}->{row['parent_rss_after_mb']:.0f} MB",
                flush=True,
            )
    comparison = {}
    if "eager" in results and "compiled" in results:
        for name in names:
            eager, compiled = results["eager"][name], results["compiled"][name]
            comparison[name] = {
                "extra_start_s": round(compiled["start_s"] - eager["start_s"], 2),
                "speedup": round(compiled["tokens_per_s"] / eager["tokens_per_s"], 3),
                "break_even_tokens": break_even_tokens(eager, compiled),
            }
            print(f"{name:8s} compiled vs eager: {comparison[name]}", flush=True)
    if not args.write:
        return
    report = {
        "benchmark": "engines",
        "machine": (
            f"{os.cpu_count()} CPU cores, no GPU, vLLM CPU build, dtype float32, a lone engine bound to every core"
        ),
        "note": (
            f"shared machine: other engineers' jobs may have run at the same time (1-min load average "
            f"{load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end); system used memory "
            "includes their processes, so the before/after difference is approximate"
        ),
        "models": results.get("eager", {}),
        "compiled": results.get("compiled", {}),
        "compiled_vs_eager": comparison,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
