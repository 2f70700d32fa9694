"""Turning k expert answers into one: LLM synthesis, choosing the aggregator, vote baselines.

Aggregators never parse benchmark formats: callers pass an ``extract`` function and an
``answer_format`` instruction for their benchmark.
"""

from aggregators.result import (
    AggregationResult,
    Competence,
    ExpertAnswer,
    Extract,
    agreement,
    resolve_competence,
    wilson_interval,
)
from aggregators.selection import (
    AggregatorChoice,
    CandidateScore,
    Score,
    SyntheticCase,
    ValidationItem,
    records_for,
    select_aggregator,
    synthetic_cases,
)
from aggregators.synthesis import (
    SynthesisJob,
    SynthesisOptions,
    bound_text,
    compose,
    order_answers,
    synthesis_outcome,
    synthesis_prompt,
    synthesis_request,
    synthesis_result,
)
from aggregators.vote import VOTERS, get_voter, log_odds_weight, majority, weighted

__all__ = [
    "VOTERS",
    "AggregationResult",
    "AggregatorChoice",
    "CandidateScore",
    "Competence",
    "ExpertAnswer",
    "Extract",
    "Score",
    "SynthesisJob",
    "SynthesisOptions",
    "SyntheticCase",
    "ValidationItem",
    "agreement",
    "bound_text",
    "compose",
    "get_voter",
    "log_odds_weight",
    "majority",
    "order_answers",
    "records_for",
    "resolve_competence",
    "select_aggregator",
    "synthesis_prompt",
    "synthesis_request",
    "synthesis_outcome",
    "synthesis_result",
    "synthetic_cases",
    "weighted",
    "wilson_interval",
]
