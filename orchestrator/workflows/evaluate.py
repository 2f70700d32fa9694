"""``coe eval``: a pool and a routing policy on a benchmark, with baselines on the same questions.

Evaluation adds scoring, baselines and reports to the one pipeline (``orchestrator.pipeline.core``)
and nothing else. Each method (ours, the baselines, the oracle) routes the questions with its
own router (``Pipeline.ask``); every method's records go through one ``Pipeline.answer``, so
the union of the experts they chose is asked once per question and sample (one task graph,
each model loaded once), the methods that aggregate with the LLM get one aggregation task each,
and each method's answer is built by the rules every door shares (``orchestrator.pipeline.answering``).
Every generation is checkpointed in the output folder's store as it finishes, so a killed run
continues with ``--resume`` and regenerates nothing; the generation cache serves what any
earlier run already asked.

A cascade method is asked whole (``Pipeline.whole_ladders``): every rung in the one task graph,
climbed afterwards by the router's own escalation, so it reaches the decisions the SDK and the
service reach in rounds; its row records the experts it climbed to (and their cost), its voters
and its escalations. Rows are written by ``orchestrator.jobs.results``, the writer jobs use too;
the oracle's row reads every expert's answer.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from batching.executor import ProgressEvent
from batching.runstore import SQLiteRunStore
from common.errors import BadInput
from common.pause_gc import paused_gc
from common.vocabulary import EvalAggregation, Vote
from eval.benchmarks import Benchmark, Question
from eval.results import MethodInfo, QuestionResult, RunInfo, write_results
from orchestrator.jobs.results import ORACLE, Scoring, question_result
from orchestrator.pipeline.asked import Asked, prompting
from orchestrator.pipeline.core import Pipeline
from orchestrator.pipeline.items import check_recordings
from orchestrator.pipeline.trace import Answer
from orchestrator.pools.pool import Pool
from orchestrator.sdk import Orchestrator
from orchestrator.workflows.out_dir import STORE_FILE, STORE_RUN_ID, check_out_dir, discard_if_unused, open_out_dir
from router import SkillRows

log = logging.getLogger(__name__)

Aggregation = EvalAggregation
BASELINE_K = 3
"""k of the random and symbolic baselines when the run's own policy sets none."""


class EvalConfig(BaseModel):
    """What a run was asked to do; kept in the output folder so ``--resume`` continues the same run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str = Field(..., description="A built-in name or a spec file's resolved path.")
    split: str
    limit: int | None = Field(None, ge=1)
    seed: int = 0
    pool_dir: str
    policy: str
    k: int | None = Field(None, ge=1)
    aggregator: Aggregation = "synthesis"
    samples: int = Field(1, ge=1, le=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    baselines: bool = False
    reference: str | None = Field(None, description="The expert ratios are against (None: the pool's costliest).")
    skip_agreement: float | None = Field(
        1.0, description="Agreement that skips the aggregator (None: --no-skip, always aggregate)."
    )
    skip_competence: float | None = Field(
        None, description="The agreeing experts' mean competence a skip also needs (the pool's fitted rule)."
    )


@dataclass(frozen=True)
class Method:
    info: MethodInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def synthesis(self) -> bool:
        return self.info.aggregation == "synthesis"


def methods(config: EvalConfig, default_k: int) -> tuple[list[Method], dict[str, str]]:
    """Ours and, with baselines, every baseline and the oracle; with the baselines skipped and why."""
    k = config.k or default_k
    played = ", played on its whole ladder's answers" if config.policy == "cascade" else ""
    ours = MethodInfo(
        name="ours",
        description=f"policy {config.policy}"
        + (f", k={config.k}" if config.k else "")
        + f"{played}, "
        + (f"{config.aggregator} of its voters" if played else config.aggregator),
        policy=config.policy,
        k=config.k,
        aggregation=config.aggregator,
        baseline=False,
    )
    chosen = [ours]
    skipped: dict[str, str] = {}
    if config.baselines:
        agg = config.aggregator
        chosen += [
            MethodInfo(
                name="single-best",
                description="the best expert overall on the profiling split",
                policy="single-best",
                k=1,
                aggregation="single",
            ),
            MethodInfo(
                name="category",
                description="the best expert of the question's predicted category (Composition of Experts)",
                policy="category",
                k=1,
                aggregation="single",
            ),
            MethodInfo(
                name="random-k",
                description=f"{k} experts drawn at random (seeded), {agg}",
                policy="random",
                k=k,
                aggregation=agg,
            ),
            MethodInfo(
                name="symbolic",
                description=f"Symbolic-MoE skill-based recruiting, k={k}, {agg}",
                policy="symbolic",
                k=k,
                aggregation=agg,
            ),
            MethodInfo(
                name="all-majority",
                description="every expert, majority vote",
                policy="all",
                k=None,
                aggregation="majority",
            ),
        ]
        if agg == "synthesis":
            chosen.append(
                MethodInfo(
                    name="all-synthesis",
                    description="every expert, the LLM aggregator (Mixture-of-Agents style)",
                    policy="all",
                    k=None,
                    aggregation="synthesis",
                )
            )
        else:
            skipped["all-synthesis"] = "runs the LLM aggregator on every question: use --aggregator synthesis"
        chosen.append(
            MethodInfo(
                name="oracle",
                description="the ceiling: right when any expert was right",
                policy="all",
                k=None,
                aggregation="oracle",
            )
        )
    return [Method(info) for info in chosen], skipped


AS_PIPELINE: dict[str, Vote | None] = {"synthesis": None, "majority": "majority", "weighted": "weighted"}
"""A method's aggregation as the pipeline runs it: the aggregator model (None) or a vote (a single
expert and the oracle, read from every expert's answer, are majorities)."""


def route(
    base: Pipeline, coe: Orchestrator, questions: Sequence[Question], bench: Benchmark, config: EvalConfig
) -> Routed:
    """Every method's decided records, for every sample (methods in order, then questions, then
    samples). The questions' skill weights are read and normalised once (every router of a pool
    shares its scorer), their prompts made once, and each distinct (policy, k) routes once."""
    chosen, skipped = methods(config, BASELINE_K)
    weights = SkillRows(coe.router(config.policy, config.k).scorer.skill_weights([q.text for q in questions]))
    promptings = [prompting(q, bench) for q in questions]
    decided: dict[tuple[str | None, int | None], list[Asked]] = {}
    asked: list[Asked] = []
    for method in chosen:
        key = (method.info.policy, method.info.k)
        vote = AS_PIPELINE.get(method.info.aggregation, "majority")
        if key not in decided:  # decided as the first method of this (policy, k) asks them
            pipeline = replace(base, router=coe.router(*key), aggregation=vote or "synthesis")
            decided[key] = pipeline.ask(questions, bench, weights=weights, promptings=promptings, method=method.name)
        for one in decided[key]:
            for sample in range(config.samples):
                same = one.vote == vote and one.sample == sample and one.method == method.name
                asked.append(one if same else replace(one, vote=vote, sample=sample, method=method.name))
    return Routed(chosen, asked, skipped)


@dataclass(frozen=True)
class Routed:
    methods: list[Method]
    asked: list[Asked]
    """Every method's records (ordered by method, question, sample)."""
    skipped: dict[str, str]
    """Baselines not run, and why."""


def score(routed: Routed, answers: Sequence[Answer], bench: Benchmark, pool: Pool) -> list[QuestionResult]:
    """Each question's (and sample's) line: every method's answer, scored by the question's judge."""
    by_question: dict[tuple[str, int], dict[str, Answer]] = {}
    questions: dict[str, Question] = {}
    for one, answer in zip(routed.asked, answers, strict=True):
        assert isinstance(one.query, Question) and one.method is not None
        questions[one.query.id] = one.query
        by_question.setdefault((one.query.id, one.sample), {})[one.method] = answer
    aggregations = {m.name: m.info.aggregation for m in routed.methods}
    oracle = next((m.name for m in routed.methods if m.info.aggregation == ORACLE), None)
    costs = {name: spec.cost for name, spec in pool.specs.items()}
    out = []
    order = {qid: i for i, qid in enumerate(questions)}
    for (qid, sample), by_method in sorted(by_question.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        question = questions[qid]
        scoring = Scoring(bench.name, bench.judge(question), question.answer, question.category, costs)
        out.append(question_result(qid, by_method, aggregations, scoring, sample=sample, oracle=oracle))
    return out


@dataclass(frozen=True)
class Outcome:
    info: RunInfo
    results: list[QuestionResult]
    out: Path


@paused_gc()  # a batch job of millions of small acyclic objects: collected once, at the end
def evaluate(
    coe: Orchestrator,
    bench: Benchmark,
    questions: Sequence[Question],
    config: EvalConfig,
    out: Path,
    *,
    resume: bool = False,
    questions_in_split: int | None = None,
    command: str = "",
) -> Outcome:
    """Run ``config`` on ``questions`` into ``out`` (``run.json``, ``results.jsonl``). The folder
    is checked first and written only once routing is done; a run that fails before it stored any
    generation leaves nothing behind."""
    if not questions:
        raise BadInput("no questions to evaluate")
    check_recordings(coe.pool, bench.item_benchmark)
    if config.reference is not None and config.reference not in coe.pool.expert_names:
        raise BadInput(
            f"reference {config.reference!r} is not one of the pool's experts ({', '.join(coe.pool.expert_names)})"
        )
    out = Path(out)
    check_out_dir(out, config, resume)
    started_at = _now()
    started = time.perf_counter()
    base = coe.pipeline(config.policy, config.k)
    rule = {"skip_agreement": config.skip_agreement, "skip_competence": config.skip_competence}
    synthesis = base.synthesis.model_copy(update=rule)
    base = replace(base, whole_ladders=True, temperature=config.temperature, synthesis=synthesis)
    _emit(coe, ProgressEvent(kind="route_start", total=len(questions)))
    routed = route(base, coe, questions, bench, config)
    routed_s = time.perf_counter() - started
    _emit(coe, ProgressEvent(kind="route_done", done=len(questions), total=len(questions), seconds=routed_s))
    created = open_out_dir(out, config, resume)
    store = SQLiteRunStore(out / STORE_FILE)
    generated = time.perf_counter()
    try:
        answered = replace(base, store=store).answer(routed.asked, run_id=STORE_RUN_ID)
    except Exception:
        discard_if_unused(out, store, created, resume)
        raise
    finally:
        store.close()
    generate_s = time.perf_counter() - generated
    scoring = time.perf_counter()
    results = score(routed, answered.answers, bench, coe.pool)
    score_s = time.perf_counter() - scoring
    metrics, tasks, chosen, skipped = answered.metrics, answered.tasks, routed.methods, routed.skipped
    del routed, answered  # the rows hold what is written: the records and answers are freed now
    info = RunInfo(
        run_id="eval-" + config_digest(config),
        benchmark=bench.name,
        benchmark_version=bench.version,
        split=config.split,
        answer_kind=str(bench.answer_kind),
        pool=coe.pool.name,
        pool_dir=config.pool_dir,
        policy=config.policy,
        k=config.k,
        aggregator=config.aggregator,
        samples=config.samples,
        seed=config.seed,
        limit=config.limit,
        questions=len(questions),
        questions_in_split=questions_in_split or len(questions),
        methods=[m.info for m in chosen],
        skipped=skipped,
        stage_seconds={
            "route": round(routed_s, 3),
            "load": round(metrics.load_seconds, 3),
            "generate": round(generate_s, 3),
            "score": round(score_s, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        model_loads=metrics.loads,
        generations=tasks - metrics.resumed - metrics.failed - metrics.cache_hits,
        reused=metrics.resumed,
        cached=metrics.cache_hits,
        retried=metrics.retried,
        aggregations_skipped=metrics.skipped,
        started=started_at,
        finished=_now(),
        command=command,
        cost_unit=coe.pool.cost_unit,
        costs=coe.pool.costs,
        cost_reference=config.reference or coe.pool.costliest,
    )
    write_results(out, info, results)
    return Outcome(info, results, out)


def _emit(coe: Orchestrator, event: ProgressEvent) -> None:
    if coe.progress is not None:
        coe.progress(event)


def config_digest(config: EvalConfig) -> str:
    """A short digest of what a run was asked: its id and its default folder's suffix."""
    unset = {"skip_competence"} if config.skip_competence is None else None  # the digests of runs before it
    return hashlib.sha256(config.model_dump_json(exclude=unset).encode()).hexdigest()[:12]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
