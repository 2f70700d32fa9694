"""The one settings object, built once by ``load_settings`` (never at import time).

Each setting has one default, here. The environment (``COE_*``) may replace a default;
CLI options and SDK arguments override both by passing ``overrides``. This module is the only
reader of ``COE_*`` variables and of where the project lies; every package gets the paths it
needs (cache, data) as arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError, config_error
from common.vocabulary import CacheMode, ExecutorKind
from orchestrator.stores.target import store_kind

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # orchestrator/pools/settings.py
DISTRIBUTION = "symbolic-coe"


def shipped_pool(name: str) -> Path:
    """The folder of a pool shipped with the project (``pools/<name>``)."""
    return PROJECT_ROOT / "pools" / name


def project_version() -> str:
    """The version of the installed ``symbolic-coe`` distribution; where it is not installed
    (a source checkout on the path), the one ``pyproject.toml`` declares."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        import tomllib

        with (PROJECT_ROOT / "pyproject.toml").open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: Path = Field(shipped_pool("default"), description="Pool directory (holds pool.toml).")
    data_dir: Path = Field(PROJECT_ROOT.parent / "shared" / "data", description="Benchmarks and replay recordings.")
    cache_dir: Path = Field(Path.home() / ".cache" / "symbolic-coe", description="Converted models and other caches.")
    runs_dir: Path = Field(Path(".coe") / "runs", description="Run stores (checkpoints) and metrics.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Logging level of the CLI (progress lines are printed regardless)."
    )
    max_question_chars: int = Field(16_000, ge=1, le=1_000_000, description="Longest question accepted, in characters.")
    max_conversation_chars: int = Field(
        200_000,
        ge=1,
        le=10_000_000,
        description="Longest conversation a chat turn may bring, in characters (every message's, the question's "
        "included); each model is shown the newest turns that fit its context.",
    )
    memory_budget_mb: float | None = Field(
        None, gt=0, description="Memory models may hold at once; None measures the machine."
    )
    devices: int = Field(1, ge=1, le=64, description="Devices (GPUs) the planner may spread phases over.")
    policy: str = Field("all", min_length=1, description="Routing policy used by answer().")
    k: int = Field(3, ge=1, le=64, description="Experts per question for policies that take k.")
    store: str | None = Field(
        None,
        min_length=1,
        description="Where generations (the cache) and batch jobs are kept: a redis:// or rediss:// URL "
        "(replicas share it) or an SQLite file; None: runs_dir/store.sqlite.",
    )
    cache: CacheMode = Field(
        "use",
        description="use: answer from the cache what was asked before, and fill it; refresh: never read it, "
        "still write it; off: neither.",
    )
    cache_ttl_s: float | None = Field(
        604_800.0, gt=0, description="Seconds a cached generation is kept (default a week); None: for good."
    )
    cache_max_entries: int | None = Field(
        100_000,
        ge=1,
        description="Most generations an SQLite cache keeps; the oldest over it are deleted as new ones are "
        "written. None: no bound but the expiry. (Redis is bounded by the expiry and its own maxmemory policy.)",
    )
    session_ttl_s: float = Field(
        86_400.0,
        gt=0,
        le=31_536_000,
        description="Seconds a conversation's session state (the experts affinity keeps) lives after its last turn.",
    )
    aggregator_skip: bool = Field(
        True, description="Skip the aggregator when the experts agree (skip_agreement); False: always call it."
    )
    skip_agreement: float = Field(
        1.0,
        gt=0.5,
        le=1.0,
        description="The share of the experts' answers that must agree (by the judge; two at least) for the "
        "aggregator to be skipped: 1 = unanimous.",
    )

    # -- scale-out (orchestrator.executors) --
    executor: ExecutorKind = Field(
        "local",
        description="Where planned groups run: local (in this process) or ray (as actors on a Ray cluster; "
        "pip install 'symbolic-coe[ray]').",
    )
    ray_address: str | None = Field(
        None,
        min_length=1,
        description="The Ray cluster the ray executor joins ('auto': the one this machine belongs to, or "
        "'HOST:6379'); None: RAY_ADDRESS, else a Ray started on this machine for the process.",
    )

    @field_validator("executor", mode="after")
    @classmethod
    def _ray_installed(cls, executor: ExecutorKind) -> ExecutorKind:
        if executor == "ray":
            from batching.ray_cluster import INSTALL, ray_installed

            if not ray_installed():
                raise ConfigError(f"executor 'ray' needs Ray, which is not installed: {INSTALL}")
        return executor

    @model_validator(mode="after")
    def _address_needs_ray(self) -> Settings:
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError(f"ray_address is {self.ray_address!r} but executor is {self.executor!r}: set executor ray")
        return self

    @property
    def consensus(self) -> float | None:
        """The agreement that skips the aggregator (``SynthesisOptions.skip_agreement``); None: never."""
        return self.skip_agreement if self.aggregator_skip else None

    @field_validator("pool", "data_dir", "cache_dir", "runs_dir", mode="after")
    @classmethod
    def _expand_home(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("store", mode="after")
    @classmethod
    def _store_target(cls, target: str | None) -> str | None:
        if target is not None:
            store_kind(target)  # a ConfigError (a ValueError) names what is wrong with it
        return target

    @property
    def store_target(self) -> str | Path:
        """What ``orchestrator.stores.open_generation_store`` opens: ``store``, or the default file."""
        return self.store if self.store is not None else self.runs_dir / "store.sqlite"

    @property
    def embeddings_dir(self) -> Path:
        """Where sentence embeddings are cached (``skills.cached_embed``)."""
        return self.cache_dir / "embeddings"

    @property
    def encoders_dir(self) -> Path:
        """Where the ONNX encoders are exported to, once (``skills.make_embedder``'s ``cache_dir``)."""
        return self.cache_dir / "encoders"

    @model_validator(mode="after")
    def _paths_distinct(self) -> Settings:
        if self.cache_dir.resolve() == self.pool.resolve():
            raise ValueError(f"cache_dir and pool are the same folder ({self.cache_dir})")
        return self


_ENV = {
    "pool": "COE_POOL",
    "data_dir": "COE_DATA_DIR",
    "cache_dir": "COE_CACHE_DIR",
    "runs_dir": "COE_RUNS_DIR",
    "log_level": "COE_LOG_LEVEL",
    "memory_budget_mb": "COE_MEMORY_BUDGET_MB",
    "policy": "COE_POLICY",
    "store": "COE_STORE",
    "cache": "COE_CACHE",
    "cache_ttl_s": "COE_CACHE_TTL_S",
    "session_ttl_s": "COE_SESSION_TTL_S",
    "executor": "COE_EXECUTOR",
    "ray_address": "COE_RAY_ADDRESS",
    "cache_max_entries": "COE_CACHE_MAX_ENTRIES",
}


def load_settings(**overrides: object) -> Settings:
    """Defaults, then ``COE_*`` environment variables, then ``overrides`` (None = not given)."""
    values: dict[str, object] = {k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:

        def source(field: str) -> str:
            from_env = field in _ENV and overrides.get(field) is None and field in values
            return f"{field} (from {_ENV[field]})" if from_env else field

        raise config_error(exc, "settings", describe=source) from exc


class JobSettings(BaseModel):
    """How batch jobs are run: by worker threads of ``coe serve`` and by ``coe worker``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=0, le=64, description="Job worker threads in each service process (0: none).")
    chunk: int = Field(
        50, ge=1, le=100_000, description="Questions run per step; progress and cancellation are seen between steps."
    )
    heartbeat_s: float = Field(5.0, gt=0, le=3600, description="How often a worker says it still runs its job.")
    reclaim_s: float = Field(
        60.0, gt=0, le=86_400, description="A running job silent this long is taken over (Redis: XAUTOCLAIM min idle)."
    )
    max_attempts: int = Field(5, ge=1, le=1000, description="Claims of one job before it is failed as abandoned.")
    poll_s: float = Field(1.0, gt=0, le=60, description="How long an idle worker waits for a job per look.")

    @model_validator(mode="after")
    def _reclaim_after_heartbeat(self) -> JobSettings:
        if self.reclaim_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"reclaim_s ({self.reclaim_s}) must be over twice heartbeat_s ({self.heartbeat_s}): "
                "a live worker's job would be taken over"
            )
        return self


class SemanticCacheSettings(BaseModel):
    """The service's semantic cache (``orchestrator.pipeline.semantic``): off unless enabled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Reuse an earlier answer for a question that means the same.")
    threshold: float = Field(
        0.9, gt=0, le=1, description="The least cosine similarity of two questions' embeddings for a reuse."
    )
    encoder: str = Field(
        "all-MiniLM-L6-v2-onnx", min_length=1, description="The encoder of the questions (skills.make_embedder)."
    )
    ttl_s: float | None = Field(7 * 86_400.0, gt=0, description="Seconds an answer is kept; None: for good.")
    keep: int = Field(32, ge=1, le=10_000, description="Answers kept per scope and facts (the newest).")


class ServiceSettings(BaseModel):
    """``coe serve``: the core settings, where it listens, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    core: Settings = Field(default_factory=Settings, description="Pool, paths, routing defaults.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free port).")
    workers: int = Field(1, ge=1, le=64, description="Server processes; each loads its own engines.")
    api_keys_file: Path | None = Field(
        None, description="Keys clients must send as 'Authorization: Bearer KEY' (one per line, plain or sha256:HEX)."
    )
    rate_limit_per_minute: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests per key (or client address) per minute; None: no limit."
    )
    max_body_bytes: int = Field(2_000_000, ge=1_024, le=1_000_000_000, description="Largest request body accepted.")
    max_batch_questions: int = Field(1_000, ge=1, le=100_000, description="Most questions in one batch request.")
    grouping: bool = Field(True, description="Run waiting requests together, each model loaded once per batch.")
    max_batch: int = Field(256, ge=1, le=100_000, description="Most distinct questions the dispatcher runs at once.")
    gather_ms: float = Field(20.0, ge=0, le=60_000, description="How long a batch waits for requests to join it.")
    max_queue: int = Field(
        4_096,
        ge=1,
        le=1_000_000,
        description="Most questions waiting for a batch; a request that would go over it is refused at once "
        "(503 overloaded, with Retry-After).",
    )
    queue_timeout_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Longest a question may wait for its batch to start; past it the request is answered "
        "503 overloaded (with Retry-After) and never run.",
    )
    lazy: bool = Field(
        False,
        description="Ready once the router is loaded; engines, the encoder and recordings load on first use. "
        "False: they are loaded at start (a warm-up) and /readyz says ready only when it is done.",
    )
    jobs: JobSettings = Field(default_factory=JobSettings, description="Batch jobs (POST /v1/batches).")
    semantic_cache: SemanticCacheSettings = Field(
        default_factory=SemanticCacheSettings, description="Answers reused for questions that mean the same."
    )
    benchmarks: tuple[Path, ...] = Field(
        (),
        max_length=1_000,
        description="Benchmark spec files a job may name (each by its spec's name) beside the built-ins; "
        "clients name benchmarks, never paths.",
    )

    @field_validator("api_keys_file", mode="after")
    @classmethod
    def _expand(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None else None

    @field_validator("benchmarks", mode="after")
    @classmethod
    def _expand_all(cls, paths: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(path.expanduser() for path in paths)


SERVICE_ENV = "COE_SERVICE_SETTINGS"
"""How ``coe serve --workers N`` hands each worker process its settings (JSON)."""


def service_settings_from_env() -> ServiceSettings:
    """The settings ``coe serve`` left for its worker processes."""
    raw = os.environ.get(SERVICE_ENV)
    if not raw:
        raise ConfigError(f"{SERVICE_ENV} is not set: start the service with 'coe serve'")
    try:
        return ServiceSettings.model_validate_json(raw)
    except ValidationError as exc:
        raise config_error(exc, SERVICE_ENV) from exc
