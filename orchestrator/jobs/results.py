"""The one writer of result rows: pipeline answers -> the lines of ``results.jsonl``
(``eval.results.QuestionResult``), for ``coe eval`` and batch jobs alike.

Each method's answer to a question becomes a ``MethodResult`` (its experts, final answer,
tokens, seconds, cost and, for a cascade, voters and escalations); the experts any method
consulted become ``ExpertResult`` rows with their own cost. Both are scored by the question's
judge when it has a gold answer (a job's own questions have none: ``correct`` is None).
The oracle (right when any expert was right) is a row of the scoring, not of the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batching import Cost
from common.answers import Judge
from eval.results import Climbed, ExpertResult, MethodResult, QuestionResult
from orchestrator.pipeline.answering import expert_cost
from orchestrator.pipeline.trace import Answer

ORACLE = "oracle"
SYNTHESIS = "synthesis"


@dataclass(frozen=True)
class Scoring:
    """How one question's answers are scored and labelled."""

    benchmark: str
    judge: Judge | None = None
    gold: str | None = None
    """None: the question has no gold answer (nothing is scored)."""
    category: str | None = None
    costs: Mapping[str, Cost | None] | None = None
    """The pool's declared cost of each expert (one call each when None)."""
    _verdicts: dict[str | None, bool] = field(default_factory=dict, compare=False, repr=False)
    """Each answer judged so far: the question's methods and experts state few distinct ones."""

    def correct(self, answer: str | None) -> bool | None:
        if self.gold is None or self.judge is None:
            return None
        verdict = self._verdicts.get(answer)
        if verdict is None:
            verdict = self._verdicts[answer] = self.judge.correct(answer, self.gold)
        return verdict


def method_result(answer: Answer, aggregation: str, scoring: Scoring) -> MethodResult:
    """One method's answer as a row. ``aggregation``: synthesis, majority, weighted or single."""
    trace = answer.trace
    outcome = trace.aggregation
    wrote = aggregation == SYNTHESIS and outcome is not None and outcome.fallback is None
    tokens_in, tokens_out = trace.tokens
    seconds = trace.timings.experts + (outcome.seconds if wrote and outcome is not None else 0.0)
    final = answer.choice if answer.error is None else None
    return MethodResult(
        experts=tuple(e.expert for e in trace.experts),
        final=final,
        correct=scoring.correct(final),
        aggregation=aggregation,
        aggregator=trace.aggregator if aggregation == SYNTHESIS else None,
        text=outcome.text if wrote and outcome is not None else "",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        seconds=round(seconds, 4),
        fallback=outcome.fallback if outcome is not None else None,
        skipped=outcome.skipped if outcome is not None else None,
        cost=round(trace.cost, 6),
        voters=trace.voters,
        escalations=tuple(Climbed.model_validate(step.model_dump()) for step in trace.escalations),
    )


def expert_results(answers: Mapping[str, Answer], scoring: Scoring) -> tuple[ExpertResult, ...]:
    """Every expert any method consulted, once each, in the order the methods met them."""
    costs = scoring.costs or {}
    rows: dict[str, ExpertResult] = {}
    for answer in answers.values():
        for e in answer.trace.experts:
            if e.expert in rows:
                continue
            rows[e.expert] = ExpertResult(
                expert=e.expert,
                text=e.text,
                answer=e.choice,
                correct=scoring.correct(e.choice),
                tokens_in=e.tokens_in,
                tokens_out=e.tokens_out,
                seconds=e.seconds,
                error=e.error,
                cost=round(expert_cost(costs.get(e.expert), e), 6),
            )
    return tuple(rows.values())


def oracle_result(experts: tuple[ExpertResult, ...]) -> MethodResult:
    """The ceiling: right when any expert was right (every expert consulted)."""
    hit = next((e for e in experts if e.error is None and e.correct), None)
    return MethodResult(
        experts=tuple(e.expert for e in experts),
        final=hit.answer if hit is not None else None,
        correct=hit is not None,
        aggregation=ORACLE,
        tokens_in=sum(e.tokens_in for e in experts),
        tokens_out=sum(e.tokens_out for e in experts),
        seconds=max((e.seconds for e in experts), default=0.0),
        cost=round(sum(e.cost for e in experts), 6),
    )


def question_result(
    question_id: str,
    answers: Mapping[str, Answer],
    aggregations: Mapping[str, str],
    scoring: Scoring,
    *,
    sample: int = 0,
    oracle: str | None = None,
) -> QuestionResult:
    """One question's line: ``answers`` by method name (the first one's route gives the skills),
    each method's ``aggregations`` kind; ``oracle`` names the oracle method, if any, whose answer
    (every expert asked) is read for its experts alone."""
    experts = expert_results(answers, scoring)
    rows: dict[tuple[int, str], MethodResult] = {}  # methods that share one answer (one vote) share its row
    methods = {}
    for name, answer in answers.items():
        if name == oracle:
            methods[name] = oracle_result(experts)
            continue
        key = (id(answer), aggregations[name])
        if key not in rows:
            rows[key] = method_result(answer, aggregations[name], scoring)
        methods[name] = rows[key]
    route = next(iter(answers.values())).trace.route
    top = dict(sorted(route.skills.items(), key=lambda kv: -kv[1])[:3])
    return QuestionResult(
        question_id=question_id,
        sample=sample,
        benchmark=scoring.benchmark,
        category=scoring.category,
        gold=scoring.gold,
        skills={s: round(w, 4) for s, w in top.items()},
        confidence=round(route.confidence, 4),
        experts=experts,
        methods=methods,
    )


__all__ = ["ORACLE", "Scoring", "expert_results", "method_result", "oracle_result", "question_result"]
