"""The live path's phases against vLLM offline, for ``benchmarks/engines.py --part phases``.

Live: a warm ``Orchestrator`` session on the default pool answers questions (one question, then
a batch) while every engine call is timed from this process (``Recorder``): the pipe to the
vLLM child, its screening and prompt building, vLLM, detokenisation and the results coming
back are all inside. The experts' wave (SmolLM2 and Gemma side by side) is one phase, the
aggregation (SmolLM2 alone) the other; a phase's tokens/s is its new tokens over its wall time.

Offline: the same requests, as the engine would send them (the same messages or prompt, the
same sampling), go to ``vllm.LLM.chat`` / ``LLM.generate`` in a fresh process holding one model
on every core, one model after another, each call timed; a phase offline is the sum of its
calls. The offline ``LLM`` gets the engine options the pool's engines get (``engine_args``:
float32, eager, the context, the KV cache, no chunked prefill), so the two differ only in how
the work reaches vLLM and which cores it runs on. Each offline setting (``OFFLINE``) is one way
vLLM can be told to use the machine; a phase's ratio is against the best of them.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common.requests import Generation, Request

_STOCK = {"GOMP_SPINCOUNT": None, "SYMBOLIC_COE_IDLE_WAITS": None}  # vLLM as it ships: none of the project's tuning
OFFLINE = {
    "auto": {"VLLM_CPU_OMP_THREADS_BIND": "auto", "VLLM_CPU_NUM_OF_RESERVED_CPU": None, **_STOCK},
    "every_core": _STOCK,
    "every_core_tuned": {},
}
"""Offline settings: ``auto``, vLLM's own default (it binds its worker to the cores but one and
leaves that one to its engine process); ``every_core``, the worker bound to every core, no core
reserved, vLLM and libgomp waiting as they ship (OpenMP threads spin 300,000 times before they
sleep, vLLM's processes poll their queues, yielding the core, for a second after each message);
``every_core_tuned``, the same with the environment the project's engines have (OpenMP threads
spin 3,000 times, ``GOMP_SPINCOUNT``; vLLM's processes nap between polls,
``batching/engines/_vllm_plugin.py``)."""


@dataclass
class Call:
    """One engine call of the live path: which model, which requests, when, what came back."""

    model: str
    requests: list[Request]
    started: float
    ended: float
    tokens_out: int
    run: int = 0

    @property
    def aggregation(self) -> bool:
        from orchestrator.pipeline.task_ids import is_aggregate

        return all(is_aggregate(r.id) for r in self.requests)


@dataclass
class Recorder:
    """Wraps an engine factory: every engine's ``generate`` is timed and its requests kept."""

    factory: Any
    calls: list[Call] = field(default_factory=list)
    run: int = 0

    def __call__(self, spec, cpus=None):
        engine = self.factory(spec) if cpus is None else self.factory(spec, cpus=cpus)
        return _Timed(engine, self)


class _Timed:
    def __init__(self, engine, recorder: Recorder) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._recorder = recorder

    @property
    def loaded(self) -> bool:
        return self._engine.loaded

    def generate(self, requests, on_result=None, on_delta=None) -> list[Generation]:
        started = time.perf_counter()
        out = self._engine.generate(requests, on_result, on_delta)
        ended = time.perf_counter()
        tokens = sum(g.tokens_out for g in out if g.ok)
        self._recorder.calls.append(Call(self.spec.name, list(requests), started, ended, tokens, self._recorder.run))
        return out

    def __getattr__(self, name: str) -> Any:  # load, unload, bind, cpus, footprint_mb, ...
        return getattr(self._engine, name)


def phases(calls: Sequence[Call]) -> dict[str, dict]:
    """One run's calls as its two phases: tokens, wall seconds, tokens/s, and the calls in each."""
    out = {}
    for name, chosen in (
        ("experts", [c for c in calls if not c.aggregation]),
        ("aggregation", [c for c in calls if c.aggregation]),
    ):
        if not chosen:
            continue
        seconds = max(c.ended for c in chosen) - min(c.started for c in chosen)
        tokens = sum(c.tokens_out for c in chosen)
        out[name] = {
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            "per_model": {c.model: {"requests": len(c.requests), "tokens": c.tokens_out,
                                    "seconds": round(c.ended - c.started, 3)} for c in chosen},
        }  # fmt: skip
    return out


# -- offline, in a child process per model and setting -------------------------------------------


def offline(spec, cache_dir: str, setting: str, batches: list[list[Request]]) -> list[tuple[float, int]]:
    """(seconds, new tokens) of each batch run through ``vllm.LLM`` in a fresh process holding
    ``spec``'s model on every core with ``setting``'s environment."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_offline_child, args=(child, spec, cache_dir, OFFLINE[setting], batches))
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError as exc:
        raise RuntimeError(f"offline vLLM ({spec.name}, {setting}) died") from exc
    finally:
        process.join(60)
    if isinstance(result, str):
        raise RuntimeError(f"offline vLLM ({spec.name}, {setting}): {result}")
    return result


def _offline_child(conn, spec, cache_dir: str, environment: dict[str, str | None], batches) -> None:
    import traceback
    from pathlib import Path

    from batching.engines._orphans import guard_group, kill_group

    guard_group(os.getppid())  # vLLM's processes die with this one, and this one with the benchmark
    try:
        conn.send(_offline_run(spec, Path(cache_dir), environment, batches))
    except Exception:  # noqa: BLE001 - reported to the parent
        conn.send(traceback.format_exc()[-2000:])
    finally:
        conn.close()
        kill_group()  # whatever vLLM left running, and this process: the answer is sent


def _offline_run(spec, cache_dir, environment: dict[str, str | None], batches) -> list[tuple[float, int]]:
    from batching.engines._vllm_worker import _sampling, screen
    from batching.engines.vllm_engine import VLLMEngine
    from batching.engines.vllm_options import engine_args
    from batching.models import resolve_model

    model = resolve_model(spec.source.model, cache_dir)
    args = engine_args(spec.source, model, cpu=True, seed=spec.sampling.seed or 0, chat_template=spec.chat_template)
    os.environ.update(args.environment())
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if args.kv_cache_bytes is not None:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    from vllm import LLM

    llm = LLM(**args.llm_kwargs())
    shaper = VLLMEngine(spec, cache_dir)  # only its request -> job mapping (never loaded)
    out = []
    for requests in batches:
        jobs = tuple(shaper._job(r) for r in requests)
        _, max_tokens = screen(llm, jobs, spec.chat_template, spec.source.max_model_len)
        params = [_sampling(job, n) for job, n in zip(jobs, max_tokens, strict=True)]
        started = time.perf_counter()
        if jobs[0].messages is not None:
            done = llm.chat([j.chat() for j in jobs], params, use_tqdm=False, chat_template=spec.chat_template)
        else:
            done = llm.generate([j.prompt for j in jobs], params, use_tqdm=False)
        seconds = time.perf_counter() - started
        out.append((seconds, sum(len(d.outputs[0].token_ids) for d in done)))
    llm.llm_engine.engine_core.shutdown()
    return out
