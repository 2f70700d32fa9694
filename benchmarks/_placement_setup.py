"""The workload and the model figures of ``benchmarks/placement.py``: two pools of 16 experts and
an aggregator (7-9B models on one GPU each, from published figures; the small models of this
project's CPU measurements), and questions routed to them with a skewed distribution."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batching.plan import ModelCost
from common.requests import Request
from common.tasks import Task

ENGINES = Path(__file__).resolve().parent / "results" / "engines.json"
K = 3

SOURCES = {
    "load_gpu": "Tensorfuse, 'Reducing GPU cold start time when using vLLM' (2025-09-01): Llama-3.1-8B-Instruct "
    "on L40S with model and compile caches in place: weight loading 18 s, Dynamo 10 s, graph compilation 13 s, "
    "graph capture 7 s, engine init and imports 34 s = 82 s; https://tensorfuse.io/docs/blogs/reducing_gpu_cold_start",
    "decode_gpu": "3,363 output tokens/s for DeepSeek-R1-Distill-Qwen-7B on 1x A100 80GB with vLLM's default "
    "config (www.morphllm.com/vllm-benchmarks, collected 2025-2026 figures); Lambda's vLLM benchmark "
    "(LambdaLabsML/vllm-benchmark): 'H100 offers ~2x better throughput than A100'",
    "cpu": "benchmarks/results/engines.json (this project, measured on these 2-core machines, vLLM CPU build, "
    "eager): start_s, tokens_per_s and child_rss_mb of smollm2 and gemma3",
}
ASSUMPTIONS = [
    "GPU load seconds = 64 + 18 x params/8B: the 82 s cold start with caches, its weight loading scaled by size",
    "GPU output tokens/s = 6,700 x 7B/params: 2 x the A100 figure for a 7B model, decode memory-bound so "
    "inversely proportional to the weights read per token",
    "GPU prompt tokens/s = 30,000 x 8B/params: prefill compute-bound at ~50% of an H100's 989 dense bf16 "
    "TFLOPS, 2 FLOPs per parameter per token",
    "GPU footprint = 2 bytes per parameter + 8 GB KV cache; budget 80,000 MB per device (one 80 GB H100)",
    "CPU prompt tokens/s = 1,000 (the planner's registry default for vLLM, measured roughly on these machines); "
    "budget 16,000 MB per device (a 24 GiB machine less the system and the parent process)",
    "questions: MMLU-Pro-like; prompt 150-450 tokens (question, ten options, instructions); each expert's mean "
    "answer drawn once (GPU 300-700 tokens of chain of thought, cap 1024; CPU 128-240, cap 256)",
    "throughput constant for a whole batch (the batches here are hundreds of requests, saturating the engine); "
    "co-resident models share a device, so they take the sum of their times (no overlap of loads)",
]


@dataclass(frozen=True)
class Model:
    """One model's figures: what the fake engine takes and what the planner is told."""

    name: str
    family: str
    load_s: float
    tokens_per_s: float
    prompt_tokens_per_s: float
    memory_mb: float
    answer_tokens: float
    max_tokens: int

    def cost(self) -> ModelCost:
        return ModelCost(
            load_seconds=self.load_s,
            tokens_per_second=self.tokens_per_s,
            prompt_tokens_per_second=self.prompt_tokens_per_s,
        )


@dataclass
class Scenario:
    name: str
    models: dict[str, Model]
    aggregator: str
    budget_mb: float
    questions: int
    note: str


def gpu_scenario(questions: int, rng: random.Random) -> Scenario:
    families = [("qwen2.5-7b", 7.6), ("llama-3.1-8b", 8.0), ("gemma-2-9b", 9.2), ("mistral-7b", 7.2)]
    models = {}
    for i in range(16):
        family, params = families[i % 4]
        models[f"expert{i:02d}"] = _gpu_model(f"expert{i:02d}", family, params, rng.uniform(300, 700))
    models["aggregator"] = _gpu_model("aggregator", "llama-3.1-8b", 8.0, 400)
    note = "16 experts of four 7-9B families (fine-tunes share their family's figures), aggregator Llama-3.1-8B"
    return Scenario("gpu-7-9b", models, "aggregator", 80_000, questions, note)


def _gpu_model(name: str, family: str, params: float, answer: float) -> Model:
    return Model(
        name=name,
        family=family,
        load_s=round(64 + 18 * params / 8, 2),
        tokens_per_s=round(6700 * 7 / params, 1),
        prompt_tokens_per_s=round(30000 * 8 / params, 1),
        memory_mb=round(2000 * params + 8000),
        answer_tokens=round(answer),
        max_tokens=1024,
    )


def cpu_scenario(questions: int, rng: random.Random) -> Scenario:
    measured = json.loads(ENGINES.read_text())["models"]
    models = {}
    for i in range(16):
        family = ("smollm2", "gemma3")[i % 2]
        models[f"expert{i:02d}"] = _cpu_model(f"expert{i:02d}", family, measured[family], rng.uniform(128, 240))
    models["aggregator"] = _cpu_model("aggregator", "smollm2", measured["smollm2"], 200)
    note = "8 SmolLM2-135M and 8 Gemma-3-270M experts (fine-tunes share the measured figures), aggregator SmolLM2"
    return Scenario("cpu-small", models, "aggregator", 16_000, questions, note)


def _cpu_model(name: str, family: str, figures: Mapping[str, float], answer: float) -> Model:
    return Model(
        name=name,
        family=family,
        load_s=figures["start_s"],
        tokens_per_s=figures["tokens_per_s"],
        prompt_tokens_per_s=1000.0,
        memory_mb=round(figures["child_rss_mb"]),
        answer_tokens=round(answer),
        max_tokens=256,
    )


@dataclass
class Workload:
    tasks: list[Task]
    output: dict[str, int]  # task id -> the answer's tokens (the engine's draw; the planner never sees it)
    prompt: dict[str, int]  # task id -> prompt tokens (aggregations: filled as they are composed)
    routed: dict[str, int]  # expert -> questions routed to it


def workload(scenario: Scenario, rng: random.Random) -> Workload:
    experts = [m for m in scenario.models if m != scenario.aggregator]
    ranked = rng.sample(experts, len(experts))  # which expert is the most asked: seeded, not by name
    weight = {e: 1 / (rank + 1) for rank, e in enumerate(ranked)}
    texts: dict[int, str] = {}  # one string per prompt length, shared by the requests
    tasks: list[Task] = []
    output: dict[str, int] = {}
    prompt: dict[str, int] = {}
    routed = dict.fromkeys(experts, 0)
    for q in range(scenario.questions):
        chosen: list[str] = []
        while len(chosen) < K:
            pick = rng.choices(experts, [0 if e in chosen else weight[e] for e in experts])[0]
            chosen.append(pick)
        n = rng.randint(150, 450)
        text = texts.setdefault(n, "x" * (4 * (n - 1)))  # the planner reads ~4 characters a token
        ids = []
        for expert in chosen:
            model = scenario.models[expert]
            tid = f"q{q}/{expert}"
            tasks.append(Task(id=tid, model=expert, request=Request.user(tid, text, max_tokens=model.max_tokens)))
            output[tid] = min(model.max_tokens, max(1, round(model.answer_tokens * rng.uniform(0.5, 1.5))))
            prompt[tid] = n
            routed[expert] += 1
            ids.append(tid)
        final = f"q{q}/final"
        aggregator = scenario.models[scenario.aggregator]
        tasks.append(Task(id=final, model=scenario.aggregator, after=tuple(ids)))
        output[final] = min(aggregator.max_tokens, round(aggregator.answer_tokens * rng.uniform(0.5, 1.5)))
    return Workload(tasks, output, prompt, routed)
