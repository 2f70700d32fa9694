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

from common.errors import config_error

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shipped_pool(name: str) -> Path:
    """The folder of a pool shipped with the project (``pools/<name>``)."""
    return PROJECT_ROOT / "pools" / name


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
    memory_budget_mb: float | None = Field(
        None, gt=0, description="Memory models may hold at once; None measures the machine."
    )
    devices: int = Field(1, ge=1, le=64, description="Devices (GPUs) the planner may spread phases over.")
    policy: str = Field("all", min_length=1, description="Routing policy used by answer().")
    k: int = Field(3, ge=1, le=64, description="Experts per question for policies that take k.")

    @field_validator("pool", "data_dir", "cache_dir", "runs_dir", mode="after")
    @classmethod
    def _expand_home(cls, path: Path) -> Path:
        return path.expanduser()

    @property
    def embeddings_dir(self) -> Path:
        """Where sentence embeddings are cached (``skills.cached_embed``)."""
        return self.cache_dir / "embeddings"

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
