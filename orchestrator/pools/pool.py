"""Pool files: the experts and the aggregator of a pool, read from its ``pool.toml``.

    my-pool/
      pool.toml        experts, aggregator (this format, documented in README)
      ...              artefacts built by ``coe profile`` and the aggregator selection:
                       their layout belongs to ``orchestrator.pools.artefacts.PoolArtefacts``

``pool.toml``::

    [pool]
    name = "default"
    version = 1
    aggregator = "smollm2"          # a model below that generates (vllm or http, not replay)
    experts = ["smollm2", "gemma3"] # optional; default: every model but the aggregator
    sessions = { shift = 0.35 }     # optional: how far a conversation's skills move before its experts do

    [[models]]
    name = "smollm2"
    cost = { active_params_b = 0.135 }   # optional: or usd_per_mtok; all experts or none
    [models.source]
    kind = "vllm"                   # vllm | http | replay
    model = "packaged:smollm2-135m-instruct"

A replay source names the benchmark its recordings answer (``benchmark = "mmlu_pro"``): question
ids of different benchmarks collide, so a pool never guesses it. Paths in replay sources may use
``{data_dir}``; relative paths are read from the pool directory.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from batching.engines.kinds import KINDS, engine_kind
from batching.spec import NAME_PATTERN, ExpertSpec, ReplaySource
from common.errors import ConfigError, NotFound, config_error
from common.names import unknown_name
from eval.benchmarks import item_benchmark
from orchestrator.pools.artefacts import PoolArtefacts
from orchestrator.pools.settings import shipped_pool

log = logging.getLogger(__name__)

POOL_FILE = "pool.toml"
SOURCE_KINDS = tuple(KINDS)  # the tags pydantic puts in the location of a source's error


class Sessions(BaseModel):
    """How conversations keep their experts (session affinity, ``router.affinity``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shift: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        description="How far a new turn's skill estimate may move from the one its conversation's experts "
        "were chosen on (total variation distance, 0-1) before they change; 1: never, 0: at any change.",
    )


class PoolHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=NAME_PATTERN)
    version: int = Field(1, ge=1)
    description: str = ""
    aggregator: str = Field(..., description="Name of the model that writes the final answer.")
    experts: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="Models used as experts; default every model but the aggregator (list it to make it one too).",
    )
    sessions: Sessions = Field(default_factory=Sessions, description="Session affinity of conversations.")


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: PoolHeader
    models: tuple[ExpertSpec, ...] = Field(..., min_length=1)
    directory: Path = Path(".")

    @model_validator(mode="after")
    def _names_resolve(self) -> Pool:
        names = [m.name for m in self.models]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicate)}")
        for name in (self.pool.aggregator, *(self.pool.experts or ())):
            if name not in names:
                raise ValueError(f"{name!r} is not one of the pool's models ({', '.join(names)})")
        aggregator = self.specs[self.pool.aggregator]
        if engine_kind(aggregator).recorded:  # it would return its own recorded answer as the synthesis
            writers = " or ".join(k for k, kind in KINDS.items() if not kind.recorded)
            raise ValueError(
                f"the aggregator {self.pool.aggregator!r} replays recorded answers of {aggregator.source.model!r} "
                f"and cannot write new text: the aggregator must be a model that generates (kind {writers})"
            )
        declared = {m.name: m.cost.kind for m in self.models if m.cost is not None and m.name in self.expert_names}
        if declared and len(declared) != len(self.expert_names):
            lacking = ", ".join(e for e in self.expert_names if e not in declared)
            raise ValueError(f"either every expert declares a cost or none does; {lacking} declare(s) none")
        if len(set(declared.values())) > 1:
            raise ValueError("experts' costs must all be active_params_b or all usd_per_mtok, not a mix")
        if self.pool.experts is None and names == [self.pool.aggregator]:
            raise ValueError(
                f"the pool has no expert: its one model {names[0]!r} is the aggregator; "
                f"list it under experts to make it an expert too"
            )
        return self

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def expert_names(self) -> list[str]:
        if self.pool.experts is not None:
            return list(self.pool.experts)
        return [m.name for m in self.models if m.name != self.pool.aggregator]

    @property
    def costs(self) -> dict[str, float]:
        """Expert -> what routing weighs one of its calls at (1 each when the pool declares no costs)."""
        return {e: (c.per_call if (c := self.spec(e).cost) is not None else 1.0) for e in self.expert_names}

    @property
    def cost_unit(self) -> str:
        """What ``costs`` count: active_params_b, usd_per_mtok, or calls."""
        first = self.spec(self.expert_names[0]).cost
        return first.kind if first is not None else "calls"

    @property
    def costliest(self) -> str | None:
        """The costliest expert (the first of equals), what cost ratios are against; None when the
        pool declares no costs (a ratio is then against one call)."""
        if self.cost_unit == "calls":
            return None
        costs = self.costs
        return max(self.expert_names, key=lambda e: costs[e])

    @property
    def aggregator(self) -> ExpertSpec:
        return self.spec(self.pool.aggregator)

    @property
    def specs(self) -> dict[str, ExpertSpec]:
        return {m.name: m for m in self.models}

    @property
    def artefacts(self) -> PoolArtefacts:
        """What ``coe profile`` and the aggregator selection stored in the pool's directory."""
        return PoolArtefacts(self.directory)

    def spec(self, name: str) -> ExpertSpec:
        for model in self.models:
            if model.name == name:
                return model
        raise unknown_name("expert", name, self.specs)


def _expand(raw: dict, directory: Path, data_dir: Path) -> dict:
    for model in raw.get("models", []) if isinstance(raw.get("models"), list) else []:
        source = model.get("source") if isinstance(model, dict) else None
        if isinstance(source, dict) and source.get("kind") == "replay" and isinstance(source.get("path"), str):
            path = Path(source["path"].replace("{data_dir}", str(data_dir)))
            source["path"] = str(path if path.is_absolute() else directory / path)
        if isinstance(source, dict) and source.get("kind") == "vllm" and isinstance(source.get("model"), str):
            model_ref = source["model"]
            if model_ref.startswith((".", "/")) or model_ref.startswith("~"):
                local = Path(model_ref).expanduser()
                source["model"] = str(local if local.is_absolute() else (directory / local).resolve())
    return raw


def load_pool(path: Path, data_dir: Path) -> Pool:
    """Read a pool directory (or its pool.toml); errors name the file, the field and the problem."""
    path = Path(path)
    file = path / POOL_FILE if path.is_dir() else path
    if not file.is_file():
        raise NotFound(f"pool file {file} does not exist")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text") from exc
    raw = _expand(raw, file.parent, data_dir)
    _replay_benchmarks_named(raw, file)
    try:
        pool = Pool(**raw, directory=file.parent)
    except ValidationError as exc:  # "models[1].source.kind", without the union's "vllm" tag
        raise config_error(exc, str(file), skip=SOURCE_KINDS) from exc
    except TypeError as exc:  # e.g. [pool] given as a value instead of a table
        raise ConfigError(f"{file}: {exc}") from exc
    for pickled in pool.artefacts.pickles():
        log.warning("%s is a pickle: pools store none, and it is never read (delete it)", pickled)
    return pool


def _replay_benchmarks_named(raw: dict, file: Path) -> None:
    """Every replay source names a benchmark, and the one whose items it asks (one line naming
    the field otherwise; the types are checked by the model)."""
    models = raw.get("models")
    for i, model in enumerate(models if isinstance(models, list) else []):
        source = model.get("source") if isinstance(model, dict) else None
        if not isinstance(source, dict) or source.get("kind") != "replay":
            continue
        where = f"{file}: models[{i}].source.benchmark"
        named = source.get("benchmark")
        if named is None:
            example = 'benchmark = "mmlu_pro"'
            raise ConfigError(f"{where}: missing; name the benchmark the recordings answer, e.g. {example}")
        if isinstance(named, str) and (asked := item_benchmark(named)) != named:
            raise ConfigError(f"{where}: {named} asks the items of {asked}; name {asked}")


def recorded_models(pool: Pool) -> dict[str, str]:
    """Expert name -> recorded model name, for the pool's replay experts, in expert order."""
    specs = [pool.spec(name) for name in pool.expert_names]
    return {s.name: s.source.model for s in specs if isinstance(s.source, ReplaySource)}


def small_replay_models() -> list[str]:
    """The recorded models of the shipped ``pools/replay-small`` pool (the benchmarks' pool)."""
    return list(recorded_models(load_pool(shipped_pool("replay-small"), Path("."))).values())
