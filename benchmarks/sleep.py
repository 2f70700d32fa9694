"""Sleep mode on a GPU: wake and swap times against cold loads, per default model.

With vLLM's sleep mode (CUDA, ROCm, XPU) a warm session parks a model that must make room
(``LLM.sleep(level=1)``: the weights go to host memory, the KV cache is dropped) and wakes it
when it is needed again, instead of unloading it and loading it later. For each packaged default
model, with ``VLLMEngine`` (one child process per model, as the service runs them):

    load_s                    the first load (a packaged model is converted beforehand, untimed)
    reload_s                  a later cold load, file caches warm: what a swap without sleep pays
    unload_s                  unload() of the awake model
    sleep_s, wake_s           sleep() and wake(), medians over --rounds
    batch_after_wake_s        a short batch right after each wake (median): it works, and its cost
    gpu_used_awake_mb         device memory in use (NVML) with this model awake, the others asleep
    gpu_used_asleep_mb        the same once it sleeps too

and for each ordered pair of models the swap A -> B: ``sleep A + wake B`` (``swap_sleep_s``)
against ``unload A + load B`` (``swap_cold_s``) and their ratio (``speedup``).

    .venv/bin/python benchmarks/sleep.py [--models smollm2,gemma3] [--rounds 3]
                                         [--gpu-memory-utilization 0.4] [--write]

Where vLLM has no sleep mode (its CPU build) it prints "sleep mode unavailable here" and exits 0;
``--write`` writes benchmarks/results/sleep.json only when it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20

MODELS = {
    "smollm2": ("packaged:smollm2-135m-instruct", "chat"),
    "gemma3": ("packaged:gemma3-270m", "completion"),
}
QUESTIONS = ["Name a colour.", "What is 2 + 3?", "Name a planet.", "What do bees make?"]


def sleep_mode_here() -> bool:
    """Whether vLLM has its sleep mode on this machine (the CPU build is told apart without vLLM)."""
    from batching.engines.vllm_options import cpu_build

    if cpu_build():
        return False
    from batching.engines._vllm_sleep import available

    return available()


def gpu_used_mb() -> float | None:
    """Device memory in use on GPU 0 (NVML), or None where NVML is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used / MB
    except Exception:  # noqa: BLE001 - a figure is missing, nothing more
        return None


def measure(
    engines: Mapping[str, Any],
    requests: Callable[[str], Sequence[Any]],
    rounds: int = 3,
    gpu_used: Callable[[], float | None] = gpu_used_mb,
) -> dict[str, Any]:
    """Time loads, sleeps, wakes, unloads and reloads of ``engines`` (loaded one after another, the
    others asleep); the rows per model and the swap figures per ordered pair."""

    def timed(step: Callable[[], object]) -> float:
        started = time.perf_counter()
        step()
        return time.perf_counter() - started

    def batch(name: str) -> None:
        failed = [g.error for g in engines[name].generate(list(requests(name))) if not g.ok]
        if failed:
            raise SystemExit(f"{name}: {len(failed)} generation(s) failed: {failed[0]}")

    rows: dict[str, dict[str, Any]] = {name: {} for name in engines}
    sleeps: dict[str, list[float]] = {name: [] for name in engines}
    wakes: dict[str, list[float]] = {name: [] for name in engines}
    batches: dict[str, list[float]] = {name: [] for name in engines}
    for name, engine in engines.items():
        rows[name]["load_s"] = timed(engine.load)
        if not engine.can_sleep:
            raise SystemExit(f"{name} loaded without sleep mode: can_sleep is False")
        batch(name)
        rows[name]["gpu_used_awake_mb"] = gpu_used()
        sleeps[name].append(timed(engine.sleep))
        rows[name]["gpu_used_asleep_mb"] = gpu_used()
    for _ in range(rounds):
        for name, engine in engines.items():
            wakes[name].append(timed(engine.wake))
            batches[name].append(timed(partial(batch, name)))
            sleeps[name].append(timed(engine.sleep))
    for name, engine in engines.items():
        engine.wake()
        rows[name]["unload_s"] = timed(engine.unload)
    for name, engine in engines.items():
        rows[name]["reload_s"] = timed(engine.load)
        batch(name)
        engine.unload()
    for name in engines:
        rows[name].update(
            sleep_s=statistics.median(sleeps[name]),
            wake_s=statistics.median(wakes[name]),
            batch_after_wake_s=statistics.median(batches[name]) if batches[name] else None,
            sleeps=len(sleeps[name]),
            wakes=len(wakes[name]),
        )
    swaps = {}
    for a in engines:
        for b in engines:
            if a == b:
                continue
            warm = rows[a]["sleep_s"] + rows[b]["wake_s"]
            cold = rows[a]["unload_s"] + rows[b]["reload_s"]
            swaps[f"{a}->{b}"] = {"swap_sleep_s": warm, "swap_cold_s": cold, "speedup": cold / warm if warm else None}
    return {"models": _rounded(rows), "swaps": _rounded(swaps)}


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 3) if isinstance(value, float) else value


def vllm_engines(names: Sequence[str], cache_dir: Path, utilization: float) -> dict[str, Any]:
    """The engines of the packaged models, their models converted now (not timed)."""
    from batching.engines.vllm_engine import VLLMEngine
    from batching.models import resolve_model
    from batching.spec import ExpertSpec

    engines = {}
    for name in names:
        model, prompt_mode = MODELS[name]
        resolve_model(model, cache_dir)
        source = {"kind": "vllm", "model": model, "gpu_memory_utilization": utilization}
        spec = ExpertSpec(name=name, source=source, prompt_mode=prompt_mode, sampling={"max_tokens": 16})
        engines[name] = VLLMEngine(spec, cache_dir=cache_dir)
    return engines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--rounds", type=int, default=3, help="wakes and sleeps per model")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4, help="per model (vLLM's option)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="write the results file (only when measured)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sleep.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}" if unknown else "no model given")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not sleep_mode_here():
        print("sleep mode unavailable here (vLLM has it on CUDA, ROCm and XPU only); nothing measured")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from orchestrator import load_settings

    cache_dir = load_settings(cache_dir=args.cache_dir).cache_dir
    engines = vllm_engines(names, cache_dir, args.gpu_memory_utilization)

    def requests(name: str) -> list[Any]:  # a completion-mode expert renders them as plain prompts
        from common.requests import Request

        return [Request.user(f"{name}-{i}", text) for i, text in enumerate(QUESTIONS)]

    try:
        result = measure(engines, requests, args.rounds)
    finally:
        for engine in engines.values():
            engine.unload()
    for name, row in result["models"].items():
        print(
            f"{name:8s} load {row['load_s']:.2f}s  reload {row['reload_s']:.2f}s  unload {row['unload_s']:.2f}s  "
            f"sleep {row['sleep_s']:.2f}s  wake {row['wake_s']:.2f}s  GPU MB awake/asleep "
            f"{row['gpu_used_awake_mb']}/{row['gpu_used_asleep_mb']}",
            flush=True,
        )
    for pair, swap in result["swaps"].items():
        print(f"swap {pair}: sleep+wake {swap['swap_sleep_s']:.2f}s, unload+load {swap['swap_cold_s']:.2f}s")
    if args.write:
        report = {
            "benchmark": "sleep",
            "machine": _machine(),
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "rounds": args.rounds,
            **result,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _machine() -> str:
    import importlib.metadata

    try:
        import pynvml

        pynvml.nvmlInit()
        gpu = str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
    except Exception:  # noqa: BLE001
        gpu = "an unnamed GPU"
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{gpu}, vLLM {version}, sleep level 1, one child process per model"


if __name__ == "__main__":
    sys.exit(main())
