"""Turning k expert answers into one: LLM synthesis, choosing the aggregator, vote baselines.

Aggregators never parse benchmark formats: callers pass an ``extract`` function and an
``answer_format`` instruction for their benchmark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy(
    __name__,
    {
        "AggregationResult": "aggregators.result",
        "Competence": "aggregators.result",
        "ExpertAnswer": "aggregators.result",
        "Extract": "aggregators.result",
        "agreement": "aggregators.result",
        "resolve_competence": "aggregators.result",
        "wilson_interval": "aggregators.result",
        "AggregatorChoice": "aggregators.selection",
        "CandidateScore": "aggregators.selection",
        "Score": "aggregators.selection",
        "SyntheticCase": "aggregators.selection",
        "ValidationItem": "aggregators.selection",
        "records_for": "aggregators.selection",
        "select_aggregator": "aggregators.selection",
        "synthetic_cases": "aggregators.selection",
        "SynthesisJob": "aggregators.synthesis",
        "SynthesisOptions": "aggregators.synthesis",
        "bound_text": "aggregators.synthesis",
        "compose": "aggregators.synthesis",
        "order_answers": "aggregators.synthesis",
        "synthesis_outcome": "aggregators.synthesis",
        "synthesis_prompt": "aggregators.synthesis",
        "synthesis_request": "aggregators.synthesis",
        "synthesis_result": "aggregators.synthesis",
        "VOTERS": "aggregators.vote",
        "get_voter": "aggregators.vote",
        "log_odds_weight": "aggregators.vote",
        "majority": "aggregators.vote",
        "weighted": "aggregators.vote",
    },
)

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
