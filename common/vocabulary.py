"""The small fixed vocabularies every layer speaks, each spelled once (and checked with
``typing.get_args`` where a value arrives from outside)."""

from __future__ import annotations

from typing import Literal

Aggregation = Literal["synthesis", "majority"]
"""How the experts' answers become one: the aggregator model writes it, or their majority is it."""

EvalAggregation = Literal["synthesis", "majority", "weighted"]
"""How ``coe eval``'s own method combines answers (``weighted``: the competence-weighted vote)."""

Vote = Literal["majority", "weighted"]
"""The votes: an answer decided without the aggregator model."""

ScorerKind = Literal["classifier", "keywords"]
"""Where routing takes a question's skills from: the pool's classifier, or LLM keywords."""

CacheMode = Literal["use", "refresh", "off"]
"""The generation cache: read and write, write only, or neither."""

SemanticMode = Literal["off", "use", "refresh", "skip"]
"""A request and the semantic cache: the cache is off; read and write; write only (the request
said no-cache); neither (no-store)."""

ExecutorKind = Literal["local", "ray"]
"""Where planned groups run: in this process, or as actors on a Ray cluster."""

MAX_NEW_TOKENS = 32768
"""The most tokens any one generation may ask for."""

__all__ = [
    "MAX_NEW_TOKENS",
    "Aggregation",
    "CacheMode",
    "EvalAggregation",
    "ExecutorKind",
    "ScorerKind",
    "SemanticMode",
    "Vote",
]
