"""What a run's report says, as numbers: the ``Summary`` and its parts (``eval.report`` makes
it from a run's files; the Markdown and the plots are drawn from it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.errors import NotFound
from eval.report_experts import Choice, ExpertSummary
from eval.results import declares_costs


class Score(BaseModel):
    """Right answers out of ``n`` and their share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correct: int
    n: int
    accuracy: float


class SampleSpread(BaseModel):
    """A method's accuracy over the run's samples: the mean of the per-sample accuracies ± its
    standard error (sample standard deviation / sqrt(samples); None with fewer than two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    standard_error: float | None
    per_sample: dict[int, Score] = Field(..., description="Accuracy of each sample, by sample index.")


class MethodSummary(BaseModel):
    """One method over the whole run (every question and sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    baseline: bool
    aggregation: str
    correct: int
    n: int = Field(..., description="Answers scored: questions × samples where the method ran.")
    accuracy: float
    ci95: tuple[float, float] = Field(..., description="Wilson score interval of the accuracy.")
    experts_per_question: float
    tokens_in_per_question: float
    tokens_out_per_question: float
    seconds_per_question: float = Field(..., description="Mean generation seconds (a timing: cost section only).")
    samples: SampleSpread | None = Field(None, description="Mean ± standard error over samples (samples > 1).")
    per_category: dict[str, Score]
    cost_per_question: float | None = Field(
        None,
        description="Mean cost of the experts consulted per answer, in the run's cost unit "
        "(None: the pool declares no costs, or the run recorded none).",
    )
    cost_ratio: float | None = Field(None, description="cost_per_question over the reference's (Summary).")
    accuracy_ratio: float | None = Field(
        None,
        description="Accuracy over the reference expert's on the answers both gave (None: no reference, or it "
        "gave none of them right).",
    )
    escalated: float | None = Field(
        None, description="A cascade: share of answers that climbed past the first rung (None: no cascade)."
    )
    aggregator_skipped: int = Field(0, description="Answers whose experts agreed, so the aggregator was not called.")
    aggregator_called: int = Field(0, description="Answers the aggregator model wrote (synthesis).")


class RunCost(BaseModel):
    """What the run cost: the only part of the report that may differ between a run and its resumption."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_loads: int
    generations: int
    reused: int
    retried: int = 0
    stage_seconds: dict[str, float]
    run_id: str
    started: str
    finished: str
    command: str


class Summary(BaseModel):
    """The whole report as numbers (``report.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str
    benchmark_version: str
    split: str
    pool: str
    policy: str
    k: int | None
    aggregator: str
    samples: int
    seed: int
    limit: int | None
    questions: int = Field(..., description="Distinct questions in the results.")
    questions_planned: int = Field(..., description="Questions the run set out to evaluate (run.json).")
    questions_in_split: int
    answers: int = Field(..., description="Lines of results.jsonl: questions × samples.")
    categories: list[str]
    methods: list[MethodSummary]
    experts: list[ExpertSummary] = Field(
        default_factory=list, description="Every expert that the results hold an answer of, over its own answers."
    )
    skipped: dict[str, str]
    usage_method: str | None = Field(None, description="The method whose expert usage is tabulated.")
    usage: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per category, per expert: share of the category's answers where usage_method consulted it.",
    )
    cost: RunCost
    cost_unit: str | None = Field(
        None,
        description="active_params_b, usd_per_mtok or calls (None: the run recorded no costs). With calls (the "
        "pool declares no costs) every cost field is None.",
    )
    cost_reference: str | None = Field(
        None,
        description="The reference expert, what accuracy and cost ratios are against (None: the pool declares no "
        "costs and the run named none).",
    )
    reference_choice: Choice | None = Field(
        None, description="costliest: the pool's costliest expert (the default); given: named with --reference."
    )
    reference_cost: float | None = Field(
        None,
        description="The reference's cost per answer (None: no costs declared, or it never ran and its cost "
        "depends on tokens).",
    )

    @property
    def costs_declared(self) -> bool:
        """Whether the pool declared costs (active parameters or prices): only then are costs shown."""
        return declares_costs(self.cost_unit)

    def method(self, name: str) -> MethodSummary:
        for one in self.methods:
            if one.name == name:
                return one
        raise NotFound(f"method {name!r} is not in this run; it has {', '.join(m.name for m in self.methods)}")
