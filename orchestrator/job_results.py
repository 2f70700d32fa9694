"""What a batch job asks and what it gives: its questions (inline, or a benchmark's split and a
seeded sample), and its answers in the ``coe eval`` results format (``eval.results``): one
``QuestionResult`` per question with the method ``ours``, and a ``RunInfo``. A benchmark job's
answers are scored with the benchmark's check; inline questions have no gold answer, so their
``gold`` and ``correct`` are None.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from batching import Cost
from common.errors import BadInput
from common.query import Query
from eval import BENCHMARKS, named_benchmark, stratified_sample
from eval.benchmarks import Benchmark, Question
from eval.results import MethodInfo, QuestionResult, RunInfo
from orchestrator.inputs import as_query
from orchestrator.pool import Pool
from orchestrator.result_rows import Scoring, question_result
from orchestrator.settings import Settings
from orchestrator.stores.jobs import MAX_JOB_QUESTIONS, Job, JobQuestion, JobRequest
from orchestrator.trace import Answer

INLINE = "inline"
"""The benchmark name of a job's own questions."""


@dataclass(frozen=True)
class JobQuestions:
    """A job's questions, their benchmark (None: inline), split and the split's size."""

    questions: list[Query]
    benchmark: Benchmark | None
    split: str
    in_split: int


def job_questions(request: JobRequest, settings: Settings, known: Mapping[str, Benchmark] = BENCHMARKS) -> JobQuestions:
    """The questions ``request`` asks, checked (length, ids unique, at most ``MAX_JOB_QUESTIONS``);
    the same on every call. A benchmark is one of ``known`` by name, never a path: the built-ins
    and the spec files the operator registered (``eval.registered_benchmarks``)."""
    if request.benchmark is not None:
        bench = named_benchmark(request.benchmark, known)
        split = request.split or bench.default_split
        every = bench.questions(settings.data_dir, split)
        chosen = stratified_sample(every, request.limit, request.seed) if request.limit else every
        if not chosen:
            raise BadInput(f"benchmark {bench.name} split {split} has no questions", param="split")
        if len(chosen) > MAX_JOB_QUESTIONS:
            raise BadInput(
                f"benchmark {bench.name} split {split} has {len(chosen)} questions; a job holds at most"
                f" {MAX_JOB_QUESTIONS}: give limit",
                param="limit",
            )
        return JobQuestions(list(chosen), bench, split, len(every))
    queries = [_inline(item, i, settings.max_question_chars) for i, item in enumerate(request.questions or [])]
    repeated = [qid for qid, n in Counter(q.id for q in queries).items() if n > 1]
    if repeated:
        raise BadInput(f"question ids must be unique in a job; repeated: {repeated[0]!r}", param="questions")
    return JobQuestions(queries, None, "", len(queries))


def _inline(item: str | JobQuestion, i: int, max_chars: int) -> Query:
    field = f"questions[{i}]"
    if isinstance(item, str):
        return as_query(item, max_chars, field=field)
    query = as_query(item.question, max_chars, options=item.options, field=field)
    return query.model_copy(update={"id": item.id}) if item.id else query


def job_result(
    answer: Answer, query: Query, bench: Benchmark | None, aggregation: str, costs: Mapping[str, Cost | None]
) -> QuestionResult:
    """One answer as a line of ``results.jsonl``: its experts and the method ``ours``, written by
    the writer ``coe eval`` uses (``orchestrator.result_rows``), cost filled in."""
    question = query if isinstance(query, Question) else None
    if bench is not None and question is not None:
        scoring = Scoring(bench.name, bench.judge(question), question.answer, question.category, costs)
    else:
        scoring = Scoring(INLINE, costs=costs)
    return question_result(answer.question_id, {"ours": answer}, {"ours": aggregation}, scoring)


def run_info(
    job: Job,
    asked: JobQuestions,
    answers: Sequence[Answer],
    *,
    pool: Pool,
    policy: str,
    stage_seconds: dict[str, float],
    model_loads: int,
    started: str,
) -> RunInfo:
    """``run.json`` of a job: how it was asked and what it cost. Its ``pool_dir`` is the pool's
    name: a client is shown no server path."""
    request = job.request
    bench = asked.benchmark
    described = f"policy {policy}" + (f", k={request.k}" if request.k else "") + f", {request.aggregation}"
    return RunInfo(
        run_id=job.id,
        benchmark=bench.name if bench is not None else INLINE,
        benchmark_version=bench.version if bench is not None else "",
        split=asked.split,
        answer_kind=str(bench.answer_kind) if bench is not None else INLINE,
        pool=pool.name,
        pool_dir=pool.name,
        policy=policy,
        k=request.k,
        aggregator=request.aggregation,
        seed=request.seed,
        limit=request.limit,
        questions=len(answers),
        questions_in_split=asked.in_split,
        methods=[
            MethodInfo(
                name="ours",
                description=described,
                policy=policy,
                k=request.k,
                aggregation=request.aggregation,
                baseline=False,
            )
        ],
        stage_seconds=stage_seconds,
        model_loads=model_loads,
        started=started,
        finished=now_text(),
        command=f"POST /v1/batches ({job.id})",
        cost_unit=pool.cost_unit,
        costs=pool.costs,
        cost_reference=pool.costliest,
    )


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


__all__ = ["INLINE", "JobQuestions", "job_questions", "job_result", "now_text", "run_info"]
