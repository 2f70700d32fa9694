"""What an evaluation run leaves on disk: ``run.json`` (how it was run) and ``results.jsonl``
(one line per question and sample). Reports are rebuilt from these two files alone.

    out/
      run.json         RunInfo: benchmark, split, pool, methods, stage times, model loads
      results.jsonl    QuestionResult per line: skills, every expert answer, each method's final
      report.md, *.png written from the two files above (``coe report DIR``)

Field names are a stable contract: the service's batch results use the same format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import BadInput, NotFound

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
SCHEMA = 1
DECLARED_UNITS = ("active_params_b", "usd_per_mtok")
"""The cost units of a pool that declares costs; ``calls`` (it declares none) is not one."""


def declares_costs(cost_unit: str | None) -> bool:
    """Whether a run's cost unit is a declared cost (not ``calls``, nor None: a run made before costs)."""
    return cost_unit in DECLARED_UNITS


class ExpertResult(BaseModel):
    """One expert's answer to one question (one sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str
    text: str = Field("", description="The raw answer.")
    answer: str | None = Field(None, description="The extracted answer (a recording's own when it has one).")
    correct: bool | None = Field(False, description="None: not scored (the question has no gold answer).")
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str | None = None
    cost: float = Field(0.0, description="What this call cost in the run's cost unit (0 in runs made before costs).")


class Climbed(BaseModel):
    """A cascade's decision after one round (``router.Escalation``, as eval recorded it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round: int = Field(..., ge=1)
    leader: str | None
    confidence: float
    next_confidence: float | None = None
    escalate: bool


class MethodResult(BaseModel):
    """What one method (ours, a baseline, the oracle) answered to one question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts: tuple[str, ...] = Field(..., description="The experts this method consulted.")
    final: str | None = Field(None, description="The method's final answer, extracted.")
    correct: bool | None = Field(False, description="None: not scored (the question has no gold answer).")
    aggregation: str = Field(..., description="synthesis, majority, weighted, single or oracle.")
    aggregator: str | None = Field(None, description="The model that wrote the final answer (synthesis).")
    text: str = Field("", description="The aggregator's text (synthesis only).")
    tokens_in: int = Field(0, description="Tokens read by the experts consulted and the aggregator.")
    tokens_out: int = Field(0, description="Tokens written by the experts consulted and the aggregator.")
    seconds: float = Field(0.0, description="Generation seconds: the slowest expert consulted plus the aggregator.")
    fallback: str | None = Field(None, description="Why a vote stood in for the aggregator.")
    skipped: str | None = Field(
        None, description="Why the aggregator was not called: its experts agreed (their answer stands)."
    )
    cost: float = Field(0.0, description="What the experts consulted cost, in the run's cost unit.")
    voters: tuple[str, ...] | None = Field(
        None, description="A cascade: the experts whose answers were combined (None: every one consulted)."
    )
    escalations: tuple[Climbed, ...] = Field((), description="A cascade's decision after each round.")


class QuestionResult(BaseModel):
    """One question (one sample) of an evaluation run: one line of ``results.jsonl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: str
    sample: int = Field(0, ge=0, description="Which of the run's --samples (0-based).")
    benchmark: str
    category: str | None = None
    gold: str | None = Field(..., description="The reference answer; None for a batch job's own questions.")
    skills: dict[str, float] = Field(default_factory=dict, description="The route's top skills and weights.")
    confidence: float = 0.0
    experts: tuple[ExpertResult, ...] = Field(..., description="Every expert answer any method used.")
    methods: dict[str, MethodResult]


class MethodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    policy: str | None = Field(None, description="The routing policy (None: the oracle).")
    k: int | None = None
    aggregation: str
    baseline: bool = True


class RunInfo(BaseModel):
    """How a run was made: enough to read its results and to run it again."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA
    run_id: str
    benchmark: str
    benchmark_version: str
    split: str
    answer_kind: str
    pool: str
    pool_dir: str
    policy: str
    k: int | None
    aggregator: str = Field(..., description="synthesis, majority or weighted: how 'ours' combines answers.")
    samples: int = 1
    seed: int = 0
    limit: int | None = None
    questions: int = Field(..., description="Questions evaluated (each answered `samples` times).")
    questions_in_split: int
    methods: list[MethodInfo]
    skipped: dict[str, str] = Field(default_factory=dict, description="Baselines not run, and why.")
    stage_seconds: dict[str, float] = Field(
        default_factory=dict, description="Seconds per stage: route, generate, score, total."
    )
    model_loads: int = 0
    generations: int = Field(0, description="Generations made by engines in this invocation.")
    reused: int = Field(0, description="Generations read back from the run's store (--resume).")
    cached: int = Field(0, description="Generations answered from the generation cache (earlier runs).")
    retried: int = Field(0, description="Requests sent again after their engine died or its Ray actor was lost.")
    aggregations_skipped: int = Field(0, description="Aggregator calls saved: the experts agreed (consensus).")
    started: str = ""
    finished: str = ""
    command: str = ""
    cost_unit: str | None = Field(
        None, description="active_params_b, usd_per_mtok or calls (None: a run made before costs were recorded)."
    )
    costs: dict[str, float] = Field(default_factory=dict, description="Expert -> its declared cost of one call.")
    cost_reference: str | None = Field(
        None,
        description="The reference expert, what accuracy and cost ratios are against: the one named with "
        "--reference, else the pool's costliest (None: neither, the pool declares no costs).",
    )


def write_results(directory: Path, info: RunInfo, results: Iterable[QuestionResult]) -> None:
    """Write ``run.json`` and ``results.jsonl`` (each replaced whole, never half-written)."""
    from common.artefacts import replace_file

    directory.mkdir(parents=True, exist_ok=True)
    replace_file(directory / RESULTS_FILE, (r.model_dump_json() + "\n" for r in results))  # line by line
    replace_file(directory / RUN_FILE, info.model_dump_json(indent=1) + "\n")


def read_run(directory: Path) -> RunInfo:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        raise NotFound(f"{path} does not exist (not an evaluation output folder?)")
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not a run description: {_first_error(exc)}") from exc


def iter_results(directory: Path) -> Iterator[QuestionResult]:
    path = Path(directory) / RESULTS_FILE
    if not path.is_file():
        raise NotFound(f"{path} does not exist (not an evaluation output folder?)")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield QuestionResult.model_validate_json(line)
            except (ValidationError, ValueError) as exc:
                raise BadInput(f"{path}:{number}: not a question result: {_first_error(exc)}") from exc


def read_results(directory: Path) -> list[QuestionResult]:
    return list(iter_results(directory))


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0]
