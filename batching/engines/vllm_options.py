"""The vLLM engine options of one expert, derived in one place.

``engine_args`` turns a ``VLLMSource`` (plus the resolved model folder and the platform)
into a ``VLLMArgs`` record. The in-process worker builds ``vllm.LLM(**args.llm_kwargs())``,
an OpenAI-compatible server is started with ``args.server_flags(...)``, and both put
``args.environment()`` into the environment of the process that loads vLLM. Nothing here
imports vLLM.

Choices made for the CPU build (vLLM 0.32, measured on 2-core machines, see RUNTIME.md):

- ``dtype="auto"`` means float32 (4.5x faster than bfloat16 on AVX2).
- Chunked prefill is off: with it, a per-request ``seed`` at temperature > 0 crashed the
  engine once a prefill was split (``CPU Generator does not use offset``); without it the
  same batch ran and the seeds were honoured (same seed, same text).
- The model worker is bound to the cores given (``cpus``; all allowed cores when None) and no
  core is reserved: a lone engine on both cores ran at 443 tokens/s against 312 with vLLM's
  default binding to one core.
- Its OpenMP threads spin briefly, then sleep (``GOMP_SPINCOUNT=3000``, a few microseconds),
  between parallel regions. libgomp's default spins 100 times longer, fastest on an idle machine
  but slow on a busy one; passive waiting (no spin) is the reverse. Measured here (SmolLM2 alone
  on both cores, one request / a batch of 8, tokens/s): idle machine, passive 23 / 150, default
  24-26 / 162-169, spin 3000 28 / 185; with two busy processes beside it, passive 13-18 /
  114-127, default 7-10 / 49-58, spin 1000-3000 9-23 / 66-148 (bimodal).
- vLLM's own processes nap instead of spinning while they wait on each other
  (the plugin ``batching/engines/_vllm_plugin.py``, switched on by its ``ENV``).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batching.engines._vllm_plugin import ENV as IDLE_WAITS
from batching.spec import VLLMSource
from common.errors import ConfigError

__all__ = ["VLLMArgs", "cpu_build", "engine_args"]

GIB = 1 << 30
_CPU_BATCH_TOKENS = 4096  # vLLM's own default on the CPU build
_SPIN_COUNT = "3000"  # libgomp's spins before a waiting thread sleeps (its default is 300,000)


@dataclass(frozen=True)
class VLLMArgs:
    """Everything one vLLM engine is started with, whichever way it is started."""

    model: str
    dtype: str
    max_model_len: int
    max_num_seqs: int
    enforce_eager: bool
    seed: int
    cpu: bool
    chat_template: str | None = None
    # CPU build only
    kv_cache_gib: float | None = None
    cpus: tuple[int, ...] | None = None
    enable_chunked_prefill: bool | None = None
    max_num_batched_tokens: int | None = None
    # GPU only
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    enable_sleep_mode: bool | None = None

    @property
    def kv_cache_bytes(self) -> int | None:
        """KV cache size in bytes when it is not a whole number of GiB (the variable takes GiB)."""
        if self.kv_cache_gib is None or float(self.kv_cache_gib).is_integer():
            return None
        return int(self.kv_cache_gib * GIB)

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``vllm.LLM`` (the chat template goes with each chat call)."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
        }
        optional = {
            "kv_cache_memory_bytes": self.kv_cache_bytes,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enable_sleep_mode": self.enable_sleep_mode,
        }
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        return kwargs

    def server_flags(self, *, served_name: str, host: str, port: int) -> list[str]:
        """Command-line flags of ``python -m vllm.entrypoints.openai.api_server`` for the same engine."""
        flags = [
            "--model", self.model,
            "--served-model-name", served_name,
            "--host", host,
            "--port", str(port),
        ]  # fmt: skip
        for key, value in self.llm_kwargs().items():
            if key == "model":
                continue
            name = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                flags.append(name if value else name.replace("--", "--no-", 1))
            else:
                flags += [name, str(value)]
        if self.chat_template:
            flags += ["--chat-template", self.chat_template]
        return flags

    def environment(self) -> dict[str, str]:
        """Variables to set in the process that starts vLLM, before it starts."""
        if not self.cpu:
            return {}
        env: dict[str, str] = {"GOMP_SPINCOUNT": _SPIN_COUNT, IDLE_WAITS: "1"}
        if self.kv_cache_gib is not None and self.kv_cache_bytes is None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(int(self.kv_cache_gib))
        if self.cpus:
            env["VLLM_CPU_OMP_THREADS_BIND"] = _bind_mask(self.cpus, self.tensor_parallel_size or 1)
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        return env


def engine_args(
    source: VLLMSource,
    model_path: str,
    *,
    cpu: bool,
    seed: int = 0,
    chat_template: str | None = None,
    cpus: tuple[int, ...] | None = None,
    sleep_mode: bool = False,
) -> VLLMArgs:
    """The options of ``source``'s engine; ``cpus=None`` on a CPU means every allowed core.
    ``sleep_mode``: start vLLM with its sleep mode (say so only where the platform has it; the
    CPU build has not, and it is never asked for there)."""
    dtype = "float32" if source.dtype == "auto" and cpu else source.dtype
    common: dict[str, Any] = {
        "model": model_path,
        "dtype": dtype,
        "max_model_len": source.max_model_len,
        "max_num_seqs": source.max_num_seqs,
        "enforce_eager": source.enforce_eager,
        "seed": seed,
        "cpu": cpu,
        "chat_template": chat_template,
    }
    if not cpu:
        return VLLMArgs(
            **common,
            gpu_memory_utilization=source.gpu_memory_utilization,
            tensor_parallel_size=source.tensor_parallel_size,
            enable_sleep_mode=True if sleep_mode else None,
        )
    bound = tuple(sorted(set(cpus))) if cpus else tuple(sorted(os.sched_getaffinity(0)))
    _bind_mask(bound, source.tensor_parallel_size)  # fail here, not in the child, if the cores are too few
    batch_tokens = min(max(source.max_model_len, _CPU_BATCH_TOKENS), source.max_num_seqs * source.max_model_len)
    return VLLMArgs(
        **common,
        kv_cache_gib=source.kv_cache_gib,
        cpus=bound,
        enable_chunked_prefill=False,
        max_num_batched_tokens=batch_tokens,
        tensor_parallel_size=source.tensor_parallel_size if source.tensor_parallel_size > 1 else None,
    )


def cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (``vllm-cpu``); checked without importing it."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return not Path("/dev/nvidia0").exists()
    return True


def _bind_mask(cpus: tuple[int, ...], ranks: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the cores split evenly among the tensor-parallel ranks."""
    if ranks > len(cpus):
        raise ConfigError(f"{ranks} tensor-parallel ranks need at least {ranks} cores; given {list(cpus)}")
    size = len(cpus) // ranks
    groups = [cpus[i * size : (i + 1) * size] for i in range(ranks)]
    return "|".join(",".join(str(c) for c in group) for group in groups)
