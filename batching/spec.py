"""What an expert is: where its model comes from, how it is prompted, how it samples.

An ``ExpertSpec`` is plain data, loaded from a pool file. The ``source`` is a
discriminated union on ``kind``, so a pool file says ``kind = "vllm"`` (or ``http``,
``replay``) and gets exactly that engine's fields checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.requests import Sampling

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VLLMSource(_Strict):
    """A model run by vLLM inside this machine (a child process per loaded model)."""

    kind: Literal["vllm"] = "vllm"
    model: str = Field(
        ...,
        min_length=1,
        description="A Hugging Face id, a local folder, or 'packaged:NAME' for a default model.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights dtype; 'auto' picks float32 on a CPU (measured fastest)."
    )
    max_model_len: int = Field(2048, ge=128, le=1_048_576, description="Context length.")
    max_num_seqs: int = Field(32, ge=1, le=4096, description="Sequences batched at once.")
    kv_cache_gib: float = Field(1.0, gt=0, le=1024, description="KV cache size on a CPU, GiB.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take on a GPU."
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per model.")
    enforce_eager: bool = Field(True, description="Skip graph capture: much faster start.")
    sleep_mode: bool = Field(
        True,
        description="Where vLLM has its sleep mode (CUDA, ROCm, XPU), start the engine with it, so a warm "
        "session parks the model (weights in host memory) to make room and wakes it instead of loading it.",
    )


class HTTPSource(_Strict):
    """Any OpenAI-compatible server someone runs (vLLM serve, a hosted API)."""

    kind: Literal["http"] = "http"
    base_url: str = Field(..., pattern=r"^https?://", description="Server root, e.g. http://host:8000/v1.")
    model: str = Field(..., min_length=1, description="The model name the server expects.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request timeout.")
    retries: int = Field(2, ge=0, le=10, description="Retries after a failed request.")
    concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight at once.")


class ReplaySource(_Strict):
    """Answers recorded earlier from a real model on one benchmark, looked up by question id.

    A recordings file does not say which benchmark it answers, and question ids of different
    benchmarks collide, so the source names it: a request for an item of another benchmark is
    a ``ReplayMiss``, never the answer to whatever question had that id."""

    kind: Literal["replay"] = "replay"
    path: Path = Field(..., description="JSONL file (gzip or not) of recorded answers.")
    model: str = Field(..., min_length=1, description="The model's name in the recordings.")
    benchmark: str = Field(
        ...,
        pattern=NAME_PATTERN,
        description="The benchmark whose questions the recordings answer, e.g. 'mmlu_pro' (a built-in "
        "name, or the name of a benchmark spec file).",
    )


Source = Annotated[VLLMSource | HTTPSource | ReplaySource, Field(discriminator="kind")]


class Cost(_Strict):
    """What one answer of a model costs: its active parameters, or a price per million tokens.

    Routing compares models by ``per_call``: the active parameters (billions) or the price, on
    the assumption that answers are of like length; reports that know the tokens use them.
    A pool declares one kind for all its models (``orchestrator.pools.pool`` checks).
    """

    active_params_b: float | None = Field(None, gt=0, le=100_000, description="Active parameters, billions.")
    usd_per_mtok: float | None = Field(None, gt=0, le=100_000, description="Price per million tokens, USD.")

    @model_validator(mode="after")
    def _one_kind(self) -> Cost:
        if (self.active_params_b is None) == (self.usd_per_mtok is None):
            raise ValueError("give exactly one of active_params_b and usd_per_mtok")
        return self

    @property
    def kind(self) -> str:
        return "active_params_b" if self.active_params_b is not None else "usd_per_mtok"

    @property
    def per_call(self) -> float:
        """The cost routing weighs a call of this model at."""
        return self.active_params_b if self.active_params_b is not None else self.usd_per_mtok  # type: ignore[return-value]

    def of_tokens(self, tokens: int) -> float:
        """The cost of one call that read and wrote ``tokens`` tokens: the price times the tokens,
        or the active parameters when the cost is in parameters (tokens assumed alike)."""
        if self.usd_per_mtok is not None:
            return self.usd_per_mtok * tokens / 1e6
        return self.per_call


class ExpertSpec(_Strict):
    """One model of a pool, as an expert or an aggregator."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Unique name within the pool.")
    source: Source
    prompt_mode: Literal["chat", "completion"] = Field(
        "chat", description="'completion' for base models without a chat template."
    )
    chat_template: str | None = Field(None, description="Jinja chat template overriding the model's.")
    system_prompt: str | None = Field(None, description="System message put before every chat.")
    sampling: Sampling = Field(default_factory=Sampling)
    memory_mb: float | None = Field(
        None, gt=0, description="Declared footprint when loaded; measured values take precedence."
    )
    description: str = Field("", description="Free text shown in listings.")
    cost: Cost | None = Field(None, description="What an answer costs; none: every call counts 1.")
    context_tokens: int | None = Field(
        None,
        ge=128,
        le=1_048_576,
        description="Tokens the model reads and writes at most in one call (prompt and answer): a "
        "conversation's earlier turns are cut to fit. None: a vLLM model's max_model_len; no limit for an "
        "endpoint or a recording.",
    )

    @property
    def context(self) -> int | None:
        """The context a conversation must fit in (``context_tokens``, at most a vLLM model's
        ``max_model_len``); None: no limit known."""
        limits = [self.context_tokens, getattr(self.source, "max_model_len", None)]
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else None
