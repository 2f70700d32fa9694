"""``coe ask``, ``coe route`` and ``coe plan``: one question answered or routed, a batch planned."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestrator.cli.options import (
    BenchmarkOpt,
    DataOpt,
    JsonOpt,
    KOpt,
    LimitOpt,
    NoSkipOpt,
    PolicyOpt,
    PoolOpt,
    ScorerOpt,
    SeedOpt,
    SplitOpt,
    command_settings,
)


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(route)
    app.command()(plan)


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer ('-': read it from standard input).")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A choice (repeat for each).")] = None,
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    scorer: ScorerOpt = "classifier",
    as_json: JsonOpt = False,
    no_skip: NoSkipOpt = False,
) -> None:
    """Answer one question with the pool's experts and aggregator; print the answer and a trace."""
    from orchestrator.sdk import Orchestrator

    if question == "-":
        question = sys.stdin.read()
    settings = command_settings(pool=pool, aggregator_skip=False if no_skip else None)
    from orchestrator.cli.progress import LiveProgress

    with LiveProgress() as display:
        answer = Orchestrator(settings, progress=display).answer(
            question,
            options=option,
            policy=policy,
            k=k,
            scorer=scorer,
        )
    print(answer.model_dump_json(indent=2) if as_json else answer.summary())


def route(
    question: Annotated[str, typer.Argument(help="The question to route.")],
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    scorer: ScorerOpt = "classifier",
    as_json: JsonOpt = False,
) -> None:
    """Show the routing decision for a question: skills, chosen experts, scores, confidence."""
    from orchestrator.pipeline.sources import check_sources
    from orchestrator.sdk import Orchestrator

    if question == "-":
        question = sys.stdin.read()
    coe = Orchestrator(command_settings(pool=pool))
    check_sources(coe.pool, coe.engine_factory)
    decision = coe.route(question, policy=policy, k=k, scorer=scorer)
    if as_json:
        print(decision.model_dump_json(indent=2))
        return
    skills = ", ".join(f"{s} {w:.2f}" for s, w in list(decision.skills.items())[:5]) or "(none known)"
    print(
        f"policy: {decision.policy}  confidence: {decision.confidence:.2f}"
        f"{'  (fallback to a general expert)' if decision.fallback else ''}"
    )
    print(f"skills: {skills}")
    for choice in decision.experts:
        print(f"  {choice.expert:<32} {choice.score:8.3f}")
    for number, rung in enumerate(decision.later, 2):  # a cascade's ladder
        how = "replaces the answers before" if rung.replaces else "joins the vote"
        print(f"round {number}, only if the answers so far look unsure ({how}):")
        for choice in rung.experts:
            print(f"  {choice.expert:<32} {choice.score:8.3f}")


def plan(
    benchmark: BenchmarkOpt = "mmlu_pro",
    split: SplitOpt = None,
    limit: LimitOpt = 60,
    seed: SeedOpt = 0,
    pool: PoolOpt = None,
    policy: PolicyOpt = None,
    k: KOpt = None,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices to spread phases over.")] = None,
    budget_mb: Annotated[float | None, typer.Option(help="Memory budget per device, MB.")] = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the batch plan for LIMIT questions of a benchmark (a seeded sample stratified by
    category): phases, models, loads, time."""
    from eval import load_benchmark, stratified_sample
    from orchestrator.pipeline.sources import check_sources
    from orchestrator.sdk import Orchestrator

    settings = command_settings(pool=pool, devices=devices, memory_budget_mb=budget_mb, data_dir=data_dir)
    bench = load_benchmark(benchmark)
    questions = stratified_sample(bench.questions(settings.data_dir, split), limit, seed)
    coe = Orchestrator(settings)
    check_sources(coe.pool, coe.engine_factory)
    the_plan = coe.plan(questions, benchmark=bench, policy=policy, k=k)
    print(the_plan.to_json() if as_json else the_plan.render())
    loads = coe.predicted_loads(questions, benchmark=bench, policy=policy, k=k)
    if loads != the_plan.predicted_loads and not as_json:  # a cascade: later rounds for escalated questions
        print(f"cascade: this is the first round; with every later round, at most {loads} loads in all")
