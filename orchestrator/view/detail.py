"""One question of a run in full, as the viewer shows it: its route (skills and confidence), every
expert's whole answer, and per method the experts it consulted, their votes (answers grouped by
the run's judge) or the aggregator's text, the final answer, tokens, seconds and cost."""

from __future__ import annotations

from typing import Any

from common.answers import Judge
from eval.results import MethodResult, QuestionResult
from orchestrator.view.index import expert_keys, voters


def votes(method: MethodResult, keys: dict[str, str | None]) -> list[dict[str, Any]]:
    """The answers of the experts a method combined, grouped by the judge's key, most supported
    first (then by answer); experts whose answer abstains (blank, unreadable, failed) last, as
    one group whose answer is None."""
    groups: dict[str | None, list[str]] = {}
    for name in voters(method):
        groups.setdefault(keys.get(name), []).append(name)
    ordered = sorted((k for k in groups if k is not None), key=lambda k: (-len(groups[k]), k))
    rows = [{"answer": k, "count": len(groups[k]), "experts": groups[k]} for k in ordered]
    if None in groups:
        rows.append({"answer": None, "count": len(groups[None]), "experts": groups[None]})
    return rows


def question_detail(result: QuestionResult, judge: Judge, methods: list[str], position: int) -> dict[str, Any]:
    """The question at ``position`` of its run, every part the viewer shows (``methods``: the
    run's methods in order; those this question has no answer of are left out)."""
    keys = expert_keys(result, judge)
    return {
        "position": position,
        "question_id": result.question_id,
        "sample": result.sample,
        "benchmark": result.benchmark,
        "category": result.category,
        "gold": result.gold,
        "route": {
            "skills": sorted(result.skills.items(), key=lambda kv: (-kv[1], kv[0])),
            "confidence": result.confidence,
        },
        "experts": [{**e.model_dump(), "key": keys.get(e.expert)} for e in result.experts],
        "methods": [
            {
                "name": name,
                **result.methods[name].model_dump(),
                "final_key": judge.key(result.methods[name].final),
                "votes": votes(result.methods[name], keys),
            }
            for name in methods
            if name in result.methods
        ],
    }
