"""``coe eval``: a pool and a routing policy on a benchmark, with baselines on the same questions.

Every method of a run (ours, the baselines, the oracle) reads the same expert generations:
each method routes the questions with its own router, the union of the experts they chose
is asked once per question and sample (one task graph, each model loaded once by the batch
planner), the methods that aggregate with the LLM get one aggregation task each, and each
method's final answer is then a pure function of the generations. Every generation is
checkpointed in the output folder's store as it finishes, so a killed run continues with
``--resume`` and regenerates nothing.

A cascade method (``--policy cascade``) is played on its whole ladder's generations
(``orchestrator.eval_ladders``): every rung is asked in the one task graph and the cascade
climbs them afterwards with the router's own escalation, reaching the decisions the SDK and
the service reach when they run the rounds for real; its result records the experts it
climbed to (and their cost), its voters and its escalations, and its LLM aggregation reads its
voters only. Each method's ``cost`` is what its experts' calls cost by the pool's declared
costs (``eval_ladders.answer_cost``); the oracle's, every expert it looked at.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aggregators import (
    AggregationResult,
    ExpertAnswer,
    SynthesisJob,
    compose,
    majority,
    synthesis_outcome,
    weighted,
)
from batching import ReplaySource
from batching.executor import Executor, ProgressEvent, RunResult
from batching.runstore import SQLiteRunStore
from common.errors import BadInput
from common.recordings import replay_book
from common.requests import Request
from common.tasks import Task
from eval.benchmarks import Benchmark, Question
from eval.results import ExpertResult, MethodInfo, MethodResult, QuestionResult, RunInfo, write_results
from orchestrator.eval_ladders import Ladder, calls_cost, climbed, cost_reference, ladder, voters_only
from orchestrator.eval_ladders import answer_cost as call_cost
from orchestrator.items import check_recordings
from orchestrator.pipeline import Asked
from orchestrator.pool import Pool
from orchestrator.sdk import Orchestrator
from router import Router

log = logging.getLogger(__name__)

Aggregation = Literal["synthesis", "majority", "weighted"]
CONFIG_FILE = "config.json"
STORE_FILE = "generations.sqlite"
STORE_RUN_ID = "eval"
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


def expert_task(question_id: str, sample: int, expert: str) -> str:
    return f"{question_id}/s{sample}/expert/{expert}"


def aggregate_task(question_id: str, sample: int, method: str) -> str:
    return f"{question_id}/s{sample}/{method}/aggregate"


@dataclass(frozen=True)
class Routed:
    """Each method's decision for every question, in question order."""

    methods: list[Method]
    asked: dict[str, list[Asked]]
    skipped: dict[str, str]
    """Baselines not run, and why."""
    routers: dict[str, Router]
    """Each method's router (a cascade's escalation is its router's)."""

    def ladder(self, method: str, index: int, sample: int) -> Ladder | None:
        """The cascade of ``method`` on question ``index`` and ``sample``; None when it has no later rung."""
        one = self.asked[method][index]
        if not one.decision.later:
            return None
        tasks = {e: expert_task(one.query.id, sample, e) for e in ladder(one.decision)}
        return Ladder(self.routers[method], one.decision, one.prompting.extract, tasks)


def route(coe: Orchestrator, questions: Sequence[Question], bench: Benchmark, config: EvalConfig) -> Routed:
    """Each method's decisions; the questions' skill weights are read once (every router of a
    pool shares its scorer) and each distinct (policy, k) routes once."""
    chosen, skipped = methods(config, BASELINE_K)
    ours = coe.router(config.policy, config.k)
    weights = ours.scorer.skill_weights([q.text for q in questions])
    asked: dict[str, list[Asked]] = {}
    routers: dict[str, Router] = {}
    by_router: dict[tuple[str | None, int | None], list[Asked]] = {}
    for method in chosen:
        key = (method.info.policy, method.info.k)
        router = routers[method.name] = coe.router(method.info.policy, method.info.k)
        if key not in by_router:
            by_router[key] = [
                _whole_ladder(one, router) for one in coe._pipeline(router, None).ask(questions, bench, weights=weights)
            ]
        asked[method.name] = by_router[key]
    return Routed(chosen, asked, skipped, routers)


def _whole_ladder(one: Asked, router: Router) -> Asked:
    """A cascade's record with the competence of every expert of its ladder (its voters may be any)."""
    if not one.decision.later:
        return one
    expected = router.competence(one.decision)
    return replace(one, competence={e: expected[e] for e in ladder(one.decision) if e in expected})


def index_recordings(coe: Orchestrator, experts: Sequence[str]) -> None:
    """Index the recordings of the recorded experts in one pass per file (each replay engine
    would otherwise read the whole file for its own model)."""
    by_file: dict[Path, list[str]] = {}
    for name in experts:
        source = coe.pool.spec(name).source
        if isinstance(source, ReplaySource):
            by_file.setdefault(Path(source.path), []).append(source.model)
    for path, models in by_file.items():
        replay_book(path).load(models)


def task_graph(routed: Routed, config: EvalConfig) -> tuple[list[Task], dict[str, SynthesisJob], dict[str, Ladder]]:
    """One task per (question, sample, expert any method chose, a cascade's whole ladder) and one
    aggregation task per (question, sample, method aggregating with the LLM); and the cascades
    whose aggregation reads only their voters, by aggregation task id. Experts are asked for
    token log-probabilities when a cascade reads them (any decision of the run has a later rung)."""
    tasks: list[Task] = []
    jobs: dict[str, SynthesisJob] = {}
    ladders: dict[str, Ladder] = {}
    first = routed.asked[routed.methods[0].name]
    logprobs = any(one.decision.later for asked in routed.asked.values() for one in asked)
    for i, one in enumerate(first):
        qid = one.query.id
        experts: dict[str, None] = {}
        for method in routed.methods:
            experts.update(dict.fromkeys(ladder(routed.asked[method.name][i].decision)))
        for sample in range(config.samples):
            for name in experts:
                task_id = expert_task(qid, sample, name)
                request = Request.user(
                    task_id,
                    one.prompting.prompt,
                    question_id=one.asks.question_id,
                    benchmark=one.asks.benchmark,
                    seed=sample or None,  # sample 0 keeps the expert's own seed
                    temperature=config.temperature,
                    logprobs=logprobs,
                )
                tasks.append(Task(id=task_id, model=name, request=request))
            for method in routed.methods:
                if not method.synthesis:
                    continue
                asked = routed.asked[method.name][i]
                task_id = aggregate_task(qid, sample, method.name)
                after = tuple(expert_task(qid, sample, e) for e in ladder(asked.decision))
                climb = routed.ladder(method.name, i, sample)
                if climb is not None:
                    ladders[task_id] = climb
                tasks.append(Task(id=task_id, model=asked.aggregator, after=after))
                jobs[task_id] = SynthesisJob(
                    question_text=asked.prompting.shown_question,
                    answer_format=asked.prompting.answer_format,
                    competence=asked.competence,
                    question_id=asked.asks.question_id,
                    benchmark=asked.asks.benchmark,
                )
    return tasks, jobs, ladders


def score(routed: Routed, result: RunResult, bench: Benchmark, config: EvalConfig, pool: Pool) -> list[QuestionResult]:
    """Every question's expert answers and each method's final answer, checked against gold."""
    out = []
    first = routed.asked[routed.methods[0].name]
    for i, one in enumerate(first):
        question = one.query
        assert isinstance(question, Question)
        extract = one.prompting.extract
        for sample in range(config.samples):
            answers: dict[str, ExpertAnswer] = {}
            for method in routed.methods:
                for name in ladder(routed.asked[method.name][i].decision):
                    if name not in answers:
                        generation = result.generations.get(expert_task(question.id, sample, name))
                        answers[name] = (
                            ExpertAnswer.from_generation(generation, extract)
                            if generation is not None
                            else ExpertAnswer(expert=name, error="not run")
                        )
            experts = tuple(
                ExpertResult(
                    expert=a.expert,
                    text=a.text,
                    answer=a.choice,
                    correct=bench.check(question, a.choice),
                    tokens_in=a.tokens_in,
                    tokens_out=a.tokens_out,
                    seconds=a.seconds,
                    error=a.error,
                    cost=round(call_cost(pool, a), 6),
                )
                for a in answers.values()
            )
            right = {e.expert: bool(e.correct) for e in experts}
            outcomes = {
                method.name: _method_result(
                    method,
                    routed.asked[method.name][i],
                    answers,
                    right,
                    result,
                    sample,
                    question,
                    bench,
                    pool,
                    routed.ladder(method.name, i, sample),
                )
                for method in routed.methods
            }
            ours = routed.asked[routed.methods[0].name][i].decision
            top = dict(sorted(ours.skills.items(), key=lambda kv: -kv[1])[:3])
            out.append(
                QuestionResult(
                    question_id=question.id,
                    sample=sample,
                    benchmark=bench.name,
                    category=question.category,
                    gold=question.answer,
                    skills={s: round(w, 4) for s, w in top.items()},
                    confidence=round(ours.confidence, 4),
                    experts=experts,
                    methods=outcomes,
                )
            )
    return out


def _method_result(
    method: Method,
    asked: Asked,
    answers: Mapping[str, ExpertAnswer],
    right: Mapping[str, bool],
    result: RunResult,
    sample: int,
    question: Question,
    bench: Benchmark,
    pool: Pool,
    climb: Ladder | None,
) -> MethodResult:
    """One method's answer; a cascade (``climb``) asks the rungs it climbs and combines its voters."""
    names = list(asked.decision.expert_names)
    voters = None
    common: dict = {}
    if climb is not None:
        played = climb.play(result.generations)
        names, voters = list(played.asked), played.voters
        common = {"voters": voters, "escalations": climbed(played)}
    consulted = [answers[n] for n in names]
    arrived = [a for a in consulted if a.ok and (voters is None or a.expert in voters)]
    tokens_in = sum(a.tokens_in for a in consulted)
    tokens_out = sum(a.tokens_out for a in consulted)
    seconds = max((a.seconds for a in consulted), default=0.0)
    kind = method.info.aggregation
    common |= {"experts": tuple(names), "aggregation": kind, "cost": calls_cost(pool, consulted)}
    if kind == "oracle":
        hit = next((a for a in arrived if right[a.expert]), None)  # every expert: no cascade
        final = hit.choice if hit is not None else None
        return MethodResult(
            **common, final=final, correct=hit is not None, tokens_in=tokens_in, tokens_out=tokens_out, seconds=seconds
        )
    outcome: AggregationResult | None = None
    aggregator = text = fallback = None
    if kind == "synthesis":
        task_id = aggregate_task(question.id, sample, method.name)
        generation = result.generations.get(task_id)
        composed = result.composed.get(task_id)
        aggregator = asked.aggregator
        if generation is not None and generation.ok and composed is not None:
            by_task = {
                expert_task(question.id, sample, a.expert): a for a in consulted if voters is None or a.expert in voters
            }
            outcome = synthesis_outcome(composed, generation, by_task, asked.prompting.extract)
            text = outcome.text
            tokens_in += generation.tokens_in
            tokens_out += generation.tokens_out
            seconds += generation.seconds
        else:
            fallback = (generation.error if generation is not None else None) or "aggregator did not run"
    if outcome is None and arrived:
        if kind == "weighted" and all(asked.competence.get(a.expert) is not None for a in arrived):
            outcome = weighted(arrived, competence=asked.competence, n_options=len(question.options) or None)
        else:  # majority, a single expert, and the fallback of the others
            outcome = majority(arrived, competence=asked.competence)
    final = outcome.choice if outcome is not None else None
    return MethodResult(
        **common,
        final=final,
        correct=bench.check(question, final),
        aggregator=aggregator,
        text=text or "",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        seconds=round(seconds, 4),
        fallback=fallback,
    )


def check_out_dir(out: Path, config: EvalConfig, resume: bool) -> None:
    """A new run needs an empty folder; ``--resume`` needs the same run's folder."""
    stored = out / CONFIG_FILE
    if resume:
        if not stored.is_file():
            raise BadInput(f"--resume: {out} holds no evaluation run to continue (no {CONFIG_FILE})")
        try:
            before = EvalConfig.model_validate_json(stored.read_text(encoding="utf-8"))
        except (ValidationError, ValueError, OSError) as exc:
            raise BadInput(f"--resume: {stored} is not a run configuration: {str(exc).splitlines()[0]}") from exc
        changed = [k for k, v in config.model_dump().items() if before.model_dump()[k] != v]
        if changed:
            was = ", ".join(f"{k}={before.model_dump()[k]!r} (now {config.model_dump()[k]!r})" for k in changed)
            raise BadInput(f"--resume: {out} holds a different run: {was}; repeat its command exactly")
        return
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} is not empty: use --resume to continue the run there, or choose another --out")


@dataclass(frozen=True)
class Outcome:
    info: RunInfo
    results: list[QuestionResult]
    out: Path


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
    """Run ``config`` on ``questions`` into ``out`` (``run.json``, ``results.jsonl``)."""
    if not questions:
        raise BadInput("no questions to evaluate")
    check_recordings(coe.pool, bench.item_benchmark)
    out = Path(out)
    check_out_dir(out, config, resume)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        from common.artefacts import replace_file

        replace_file(out / CONFIG_FILE, config.model_dump_json(indent=1) + "\n")
    started_at = _now()
    started = time.perf_counter()
    progress = coe.progress
    if progress is not None:
        progress(ProgressEvent(kind="route_start", total=len(questions)))
    routed = route(coe, questions, bench, config)
    routed_s = time.perf_counter() - started
    if progress is not None:
        progress(ProgressEvent(kind="route_done", done=len(questions), total=len(questions), seconds=routed_s))
    tasks, jobs, ladders = task_graph(routed, config)
    pipeline = coe._pipeline(coe.router(config.policy, config.k), None)
    plan = pipeline.plan(tasks)
    log.info(
        "eval: %d question(s) x %d sample(s), %d method(s), %d task(s), %d load(s) planned",
        len(questions),
        config.samples,
        len(routed.methods),
        len(tasks),
        plan.predicted_loads,
    )
    store = SQLiteRunStore(out / STORE_FILE)
    try:
        executor = Executor(coe.engine_factory, store, progress, coe._warm, coe._split_cores())
        generated = time.perf_counter()
        index_recordings(coe, sorted({t.model for t in tasks}))
        composer = voters_only(compose(jobs, pipeline.synthesis), ladders)
        result = executor.run(plan, tasks, coe.pool.specs, composer, run_id=STORE_RUN_ID)
        generate_s = time.perf_counter() - generated
    finally:
        store.close()
    scoring = time.perf_counter()
    results = score(routed, result, bench, config, coe.pool)
    score_s = time.perf_counter() - scoring
    metrics = result.metrics
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
        methods=[m.info for m in routed.methods],
        skipped=routed.skipped,
        stage_seconds={
            "route": round(routed_s, 3),
            "load": round(metrics.load_seconds, 3),
            "generate": round(generate_s, 3),
            "score": round(score_s, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        model_loads=metrics.loads,
        generations=len(tasks) - metrics.resumed - metrics.failed,
        reused=metrics.resumed,
        started=started_at,
        finished=_now(),
        command=command,
        cost_unit=coe.pool.cost_unit,
        costs=coe.pool.costs,
        cost_reference=cost_reference(coe.pool),
    )
    write_results(out, info, results)
    return Outcome(info, results, out)


def config_digest(config: EvalConfig) -> str:
    """A short digest of what a run was asked: its id and its default folder's suffix."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
