"""The vLLM engine on these machines: the live path's phases against vLLM offline, and each
default model's start, throughput and memory, eager against compiled.

``--part phases`` (the default): a warm session on the default pool answers one question and
then a batch, ``--rounds`` times, every engine call timed (``benchmarks/_phases.py``); the same
requests then go through vLLM's own offline ``LLM.chat``/``LLM.generate`` in one process per
model, once per offline setting (``_phases.OFFLINE``: vLLM's own default binding, which leaves
one core to its engine process; every core as vLLM ships; every core with the project's
engines' environment). Per workload (``one`` question, a ``batch``) and phase
(``experts``: SmolLM2 and Gemma side by side; ``aggregation``: SmolLM2 alone) and round:

    live_tokens_per_s        the phase's new tokens over its wall time, engine calls timed here
    offline_tokens_per_s     per setting: the same requests' tokens over the sum of their calls
    ratio                    live over the best offline setting of that round

with the median, lowest and highest over the rounds (the machine is shared: that spread is the
noise), and the load average before and after each part.

``--part start``: for each model and mode (``eager``: ``enforce_eager=True``, the pools'
default; ``compiled``: ``enforce_eager=False``), a lone engine bound to every core loads with
``VLLMEngine``, generates one batch of 32 short prompts with up to 128 new tokens each (SmolLM2
as chats, Gemma-3-270M, a base model, as completion prompts), and unloads. Reported per model
and mode:

    start_s               load() wall time (child start, vLLM start, compile if any, model load)
    tokens_per_s          new tokens of the whole batch / its wall time
    rss_before_mb         system used memory before load (psutil.virtual_memory().used)
    rss_loaded_mb         system used memory while loaded
    rss_after_unload_mb   system used memory after unload
    child_rss_mb          resident memory of the engine's child process tree (footprint_mb)
    parent_rss_*_mb       this process's own RSS before load and after unload

and per model, ``break_even_tokens``: how many generated tokens (at this batch's speed) repay
the compiled mode's longer start; null when compiled is not faster.

    .venv/bin/python benchmarks/engines.py [--part phases] [--rounds 3] [--batch 8]
                                           [--offline auto,every_core,every_core_tuned] [--write]
    .venv/bin/python benchmarks/engines.py --part start [--models smollm2,gemma3]
                                           [--modes eager,compiled] [--max-tokens 128] [--write]

Prints the figures; ``--write`` also writes benchmarks/results/engines.json, replacing only the
part measured (``phases``; or ``models``, the eager rows under the keys the README quotes, with
``compiled`` and ``compiled_vs_eager``).
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


QUESTIONS = [
    "Which planet is the largest?", "Is a tomato a fruit or a vegetable?", "Why is the sky blue?",
    "What do bees make?", "How many legs does a spider have?", "What melts ice on roads?",
    "Who wrote Romeo and Juliet?", "What gas do plants take in?", "Why do cats purr?",
    "What is the boiling point of water?", "How far away is the moon?", "What causes tides?",
    "Why do leaves change colour?", "What is a prime number?", "How do magnets work?",
    "What is the capital of Japan?", "Why do we have seasons?", "What do pandas eat?",
    "How do fish breathe?", "What makes thunder?", "What is the speed of light?",
    "Why is the sea salty?", "How do birds fly?", "What is a volcano?", "Why do onions make us cry?",
    "What is DNA?", "How do vaccines work?", "What is an atom?", "Why do stars twinkle?",
    "What is gravity?", "How are rainbows made?", "What is a black hole?", "Why do we sleep?",
]  # fmt: skip


def _spread(values: list[float]) -> dict:
    ordered = sorted(values)
    middle = ordered[len(ordered) // 2] if len(ordered) % 2 else sum(ordered[len(ordered) // 2 - 1 :][:2]) / 2
    return {"median": round(middle, 3), "lowest": round(ordered[0], 3), "highest": round(ordered[-1], 3)}


BUDGET_MB = 16000.0
"""The memory budget of the live sessions: the default pool's two models (11,200 MB declared) side by
side, as on an idle 24 GiB machine, whatever other work holds when a session starts."""


def live_round(questions: list[str], batch: int, run: int) -> tuple[list, dict[str, float], dict, str]:
    """One round of the live path: a fresh warm session loads the default pool (a first answer,
    not measured), answers one question, then ``batch`` at once. Returns its engine calls (runs
    ``run`` and ``run + 1``), the two answers' wall seconds, the pool's specs and the cache folder."""
    import tempfile

    from _phases import Recorder

    from orchestrator import Orchestrator, load_settings

    walls = {}
    with tempfile.TemporaryDirectory() as runs:
        settings = load_settings(runs_dir=Path(runs), cache="off", memory_budget_mb=BUDGET_MB)  # the default pool
        with Orchestrator(settings) as coe:
            recorder = Recorder(coe.engine_factory)
            coe.engine_factory = recorder
            coe.answer(questions[0])  # loads both models
            for w, (workload, asked) in enumerate((("one", questions[1:2]), ("batch", questions[2 : 2 + batch]))):
                recorder.run = run + w
                started = time.perf_counter()
                coe.answer_batch(asked)
                walls[workload] = time.perf_counter() - started
                print(f"live {workload}: {walls[workload]:.1f}s", flush=True)
            return [c for c in recorder.calls if c.run], walls, dict(coe.pool.specs), str(settings.cache_dir)


def measure_phases(rounds: int, batch: int, settings_run: list[str]) -> dict:
    """``rounds`` rounds, each the live path (``live_round``) and then the same requests offline
    in each setting, one model after the other; the ratios per round."""
    from _phases import offline, phases

    if (2 + batch) * rounds > len(QUESTIONS):
        raise SystemExit(f"{rounds} rounds of 2 + {batch} questions need more than the {len(QUESTIONS)} written here")
    load: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {"one": [], "batch": []}
    calls: list = []
    timed: dict[str, dict[int, tuple[float, int]]] = {s: {} for s in settings_run}  # setting -> call index -> figures
    for r in range(rounds):
        load.setdefault("live_start", []).append(os.getloadavg()[0])
        mine, round_walls, specs, cache_dir = live_round(QUESTIONS[(2 + batch) * r :], batch, 1 + 2 * r)
        for workload, seconds in round_walls.items():
            walls[workload].append(seconds)
        first = len(calls)
        calls += mine
        for setting in settings_run:
            load.setdefault(f"{setting}_start", []).append(os.getloadavg()[0])
            for model in sorted({c.model for c in mine}):
                ours = [first + i for i, c in enumerate(mine) if c.model == model]
                figures = offline(specs[model], cache_dir, setting, [calls[i].requests for i in ours])
                timed[setting].update(dict(zip(ours, figures, strict=True)))
                print(f"round {r + 1} offline {setting} {model}: {sum(f[0] for f in figures):.1f}s", flush=True)
        load.setdefault("round_end", []).append(os.getloadavg()[0])
    out: dict = {
        "summary": {},
        "workloads": {},
        "answer_seconds": {w: [round(x, 2) for x in v] for w, v in walls.items()},
    }
    mismatched = []
    for w, workload in enumerate(("one", "batch")):
        per_phase: dict[str, dict] = {}
        for r in range(rounds):
            run_calls = [(i, c) for i, c in enumerate(calls) if c.run == 1 + 2 * r + w]
            live = phases([c for _, c in run_calls])
            for phase, figures in live.items():
                chosen = [i for i, c in run_calls if c.aggregation == (phase == "aggregation")]
                row = per_phase.setdefault(phase, {"live_tokens_per_s": [], "offline_tokens_per_s": {}, "ratio": []})
                row["live_tokens_per_s"].append(figures["tokens_per_s"])
                best = 0.0
                for setting in settings_run:
                    seconds = sum(timed[setting][i][0] for i in chosen)
                    tokens = sum(timed[setting][i][1] for i in chosen)
                    speed = tokens / seconds
                    row["offline_tokens_per_s"].setdefault(setting, []).append(round(speed, 2))
                    best = max(best, speed)
                    if tokens != figures["tokens"]:
                        mismatched.append(
                            f"{workload} round {r + 1} {phase} {setting}: {tokens} vs {figures['tokens']}"
                        )
                row["ratio"].append(round(figures["tokens_per_s"] / best, 3))
                row.setdefault("live", []).append(figures)
        for phase, row in per_phase.items():
            row["ratio_spread"] = _spread(row["ratio"])
            row["live_spread"] = _spread(row["live_tokens_per_s"])
            out["summary"].setdefault(workload, {})[phase] = row["ratio_spread"]["median"]
        out["workloads"][workload] = {"questions": 1 if workload == "one" else batch, "phases": per_phase}
    out["tokens_offline_vs_live"] = mismatched or "the same new tokens in every call"
    out["load_average"] = {k: [round(x, 2) for x in v] for k, v in load.items()}
    return out


def measure_start(args) -> dict:
    """The start part: each model and mode loaded alone, one batch of 32 prompts."""
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
    return {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("phases", "start"), default="phases")
    parser.add_argument("--rounds", type=int, default=3, help="phases: rounds of one question and a batch")
    parser.add_argument("--batch", type=int, default=8, help="phases: questions of the batch")
    parser.add_argument("--offline", default="auto,every_core,every_core_tuned", help="phases: offline settings")
    parser.add_argument("--models", default=",".join(MODELS), help="start: comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES), help="start: comma-separated: " + ", ".join(MODES))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="write the results file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.part == "phases":
        from _phases import OFFLINE

        chosen = [s.strip() for s in args.offline.split(",") if s.strip()]
        if not chosen or any(s not in OFFLINE for s in chosen):
            raise SystemExit(f"--offline takes some of {', '.join(OFFLINE)}")
        figures = {"phases": measure_phases(args.rounds, args.batch, chosen)}
        print(json.dumps(figures["phases"], indent=1))
    else:
        figures = measure_start(args)
    if not args.write:
        return
    report = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {"benchmark": "engines"}
    report.update(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
