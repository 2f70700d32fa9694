"""The LLM aggregator end to end on the default pool, with real vLLM on this machine.

Twenty MMLU-Pro test questions (a seeded draw among those whose prompt fits the models'
context): the experts of pools/default (smollm2, gemma3) answer, then the pool's aggregator
(SmolLM2-135M-Instruct) synthesises their answers, all scheduled by the batch planner and
run by the executor. Reported: how often the aggregator's extracted answer matches the
experts' majority (and any expert) and the gold one, with parse rates, tokens and timings.

    .venv/bin/python benchmarks/aggregator_live.py [--n 20] [--seed 0]
    .venv/bin/python benchmarks/aggregator_live.py --dry-run   # FakeEngine: plumbing only
    .venv/bin/python benchmarks/aggregator_live.py --select 30 [--skip-answer] [--pool-dir D]

``--select N`` also chooses the aggregator among the pool's models on the synthetic task:
N questions of the train part of benchmarks/aggregation.py's split, each with one correct
and two incorrect recorded answers of the replay small pool; ``--pool-dir`` saves the
choice as D/aggregator.json.

Writes the figures into benchmarks/results/aggregation.json under ``live_default_pool``
(and ``live_aggregator_selection``); a dry run writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("benchmarks.aggregator_live")

RESULTS = ROOT / "benchmarks" / "results" / "aggregation.json"
MAX_PROMPT_CHARS = 2400  # question + options; leaves room in 2048 tokens for two answers


def pick_questions(n: int, seed: int):
    from eval.benchmarks import get_benchmark
    from eval.data import data_dir

    bench = get_benchmark("mmlu_pro")
    pool = [q for q in bench.questions(data_dir()) if len(bench.prompt(q)) <= MAX_PROMPT_CHARS]
    return bench, random.Random(seed).sample(pool, n)


def build_tasks(bench, questions, experts: Sequence[str], aggregator: str):
    from aggregators import SynthesisJob
    from common.requests import Request
    from common.tasks import Task
    from eval.benchmarks import format_options

    tasks, jobs = [], {}
    for q in questions:
        prompt = bench.prompt(q)
        inputs = []
        for expert in experts:
            task_id = f"{q.id}/{expert}"
            request = Request.user(task_id, prompt, question_id=q.id)
            tasks.append(Task(id=task_id, model=expert, request=request))
            inputs.append(task_id)
        agg_id = f"{q.id}/aggregate"
        tasks.append(Task(id=agg_id, model=aggregator, after=tuple(inputs)))
        extract = bench.extractor(q)
        question_text = f"{q.text.strip()}\n\nOptions:\n{format_options(q.options)}"
        jobs[agg_id] = SynthesisJob(question_text, bench.answer_format, extract=extract, question_id=q.id)
    return tasks, jobs


def score(bench, questions, experts, result, composer) -> dict:
    from aggregators import ExpertAnswer, majority, wilson_interval

    def rate(hits: list[bool]) -> dict:
        low, high = wilson_interval(sum(hits), len(hits))
        return {"rate": round(sum(hits) / max(1, len(hits)), 4), "ci95": [round(low, 4), round(high, 4)],
                "n": len(hits), "hits": sum(hits)}

    rows, agg_gold, agg_major, agg_any, agg_parsed = [], [], [], [], []
    expert_gold: dict[str, list[bool]] = {e: [] for e in experts}
    expert_parsed: dict[str, list[bool]] = {e: [] for e in experts}
    major_gold = []
    for q in questions:
        extract = bench.extractor(q)
        answers = []
        for expert in experts:
            generation = result.generations.get(f"{q.id}/{expert}")
            ok = generation is not None and generation.ok
            answer = ExpertAnswer.from_generation(generation, extract) if ok else None
            expert_parsed[expert].append(bool(answer and answer.choice))
            expert_gold[expert].append(bool(answer and answer.choice == q.answer))
            if answer is not None:
                answers.append(answer)
        vote = majority(answers) if answers else None
        generation = result.generations.get(f"{q.id}/aggregate")
        ok = generation is not None and generation.ok
        agg = composer.result(f"{q.id}/aggregate", generation) if ok else None
        choice = agg.choice if agg else None
        agg_parsed.append(choice is not None)
        agg_gold.append(choice == q.answer)
        agg_major.append(vote is not None and choice is not None and choice == vote.choice)
        agg_any.append(choice is not None and any(a.choice == choice for a in answers))
        major_gold.append(vote is not None and vote.choice == q.answer)
        rows.append({
            "question_id": q.id, "gold": q.answer,
            "experts": {a.expert: a.choice for a in answers},
            "majority": vote.choice if vote else None,
            "aggregator": choice,
            "aggregator_error": None if agg else (generation.error if generation else "not run"),
        })
    return {
        "aggregator_matches_majority": rate(agg_major),
        "aggregator_matches_any_expert": rate(agg_any),
        "aggregator_correct": rate(agg_gold),
        "aggregator_parsed": rate(agg_parsed),
        "majority_correct": rate(major_gold),
        "experts_correct": {e: rate(v) for e, v in expert_gold.items()},
        "experts_parsed": {e: rate(v) for e, v in expert_parsed.items()},
        "per_question": rows,
    }


def select(n: int, seed: int, answer_tokens: int, candidates: Sequence[str], run) -> dict:
    """The synthetic aggregation task on the replay small pool's recorded answers."""
    from aggregators import SynthesisOptions, ValidationItem, records_for, select_aggregator
    from common.recordings import replay_book
    from benchmarks.aggregation import SMALL_POOL, split_ids
    from eval.benchmarks import format_options, get_benchmark
    from eval.data import data_dir, replay_path
    from skills import question_skills

    bench = get_benchmark("mmlu_pro")
    questions = bench.questions(data_dir())
    train_ids, _ = split_ids([q.id for q in questions], seed=0, train_fraction=0.5)
    pool = [q for q in questions if q.id in train_ids and len(bench.prompt(q)) <= MAX_PROMPT_CHARS]
    records = records_for(replay_book(replay_path()), {m: m for m in SMALL_POOL})
    items = [
        ValidationItem(
            q.id,
            f"{q.text.strip()}\n\nOptions:\n{format_options(q.options)}",
            q.answer,
            question_skills(q)[0],
            bench.answer_format,
            bench.extractor(q),
        )
        for q in sorted(pool, key=lambda q: int(q.id))
    ]
    # draw n among the questions that can make a case (one right, two wrong answers)
    usable = [
        item for item in items
        if sum(records[m][item.question_id].correct == 1 for m in SMALL_POOL) >= 1
        and sum(records[m][item.question_id].correct == 0 for m in SMALL_POOL) >= 2
    ]
    drawn = random.Random(seed).sample(usable, n)
    options = SynthesisOptions(answer_limit=answer_tokens, limit_unit="tokens", seed=seed)
    choice = select_aggregator(candidates, drawn, records, run, options=options, seed=seed)
    return choice.model_dump(mode="json")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="Questions.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the question draw and answer order.")
    parser.add_argument("--answer-tokens", type=int, default=200, help="Bound per quoted answer, tokens.")
    parser.add_argument("--dry-run", action="store_true", help="FakeEngine instead of vLLM; writes nothing.")
    parser.add_argument("--select", type=int, default=0, help="Also choose the aggregator (N cases).")
    parser.add_argument("--skip-answer", action="store_true", help="Only the selection.")
    parser.add_argument("--pool-dir", type=Path, default=None, help="Save it as DIR/aggregator.json.")
    parser.add_argument("--budget-mb", type=float, default=8000.0,
                        help="Memory models may hold at once (8000: one model at a time on this machine).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from aggregators import AggregatorChoice, SynthesisOptions, compose, save_choice
    from batching import FakeEngine, make_engine
    from batching.executor import Executor
    from batching.plan import make_plan
    from orchestrator.pool import load_pool
    from orchestrator.settings import load_settings

    settings = load_settings()
    pool = load_pool(ROOT / "pools" / "default", settings.data_dir)
    experts, aggregator = pool.expert_names, pool.pool.aggregator
    bench, questions = pick_questions(args.n, args.seed)
    tasks, jobs = build_tasks(bench, questions, experts, aggregator)
    options = SynthesisOptions(
        order="random", seed=args.seed, answer_limit=args.answer_tokens, limit_unit="tokens"
    )
    composer = compose(jobs, options)
    specs = pool.specs
    plan = make_plan(tasks, specs, budget_mb=args.budget_mb)
    log.info("plan:\n%s", plan.render())

    def factory(spec):
        if args.dry_run:
            return FakeEngine(spec)
        return make_engine(spec, cache_dir=settings.cache_dir)

    sections = {}
    if args.select:
        def run(select_tasks):
            select_plan = make_plan(select_tasks, specs, budget_mb=args.budget_mb)
            with Executor(factory) as executor:
                done = executor.run(select_plan, select_tasks, specs, composer, run_id="aggregator-select")
            return done.generations

        started = time.perf_counter()
        choice = select(args.select, args.seed, args.answer_tokens, [m.name for m in pool.models], run)
        choice["wall_seconds"] = round(time.perf_counter() - started, 1)
        sections["live_aggregator_selection"] = choice
        for name, row in choice["candidates"].items():
            print(f"selection {name:10s} {row['correct']}/{row['n']} = {row['accuracy']:.2f}  "
                  f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]  failed {row['failed']}")
        print(f"selection best: {choice['best']}")
        if args.pool_dir is not None and not args.dry_run:
            stored = {k: v for k, v in choice.items() if k != "wall_seconds"}
            print(f"saved {save_choice(args.pool_dir, AggregatorChoice.model_validate(stored))}")
    if args.skip_answer:
        return finish(sections, args)

    started = time.perf_counter()
    with Executor(factory) as executor:
        result = executor.run(plan, tasks, specs, composer, run_id="aggregator-live")
    wall = time.perf_counter() - started

    report = score(bench, questions, experts, result, composer)
    agg_gens = [g for tid, g in result.generations.items() if tid.endswith("/aggregate") and g.ok]
    report.update({
        "pool": "default",
        "experts": experts,
        "aggregator": aggregator,
        "engine": "fake (dry run)" if args.dry_run else "vllm",
        "questions": len(questions),
        "question_draw": (
            f"seed {args.seed} among MMLU-Pro test questions with prompt <= {MAX_PROMPT_CHARS} chars"
        ),
        "synthesis_options": options.model_dump(),
        "aggregator_tokens_in": sum(g.tokens_in for g in agg_gens),
        "aggregator_tokens_out": sum(g.tokens_out for g in agg_gens),
        "aggregator_seconds": round(sum(g.seconds for g in agg_gens), 2),
        "failed_tasks": result.failed,
        "run_metrics": json.loads(result.metrics.to_json()),
        "wall_seconds": round(wall, 1),
    })
    for key in ("aggregator_matches_majority", "aggregator_matches_any_expert", "aggregator_correct",
                "aggregator_parsed", "majority_correct"):
        row = report[key]
        low, high = row["ci95"]
        print(f"{key:32s} {row['hits']}/{row['n']} = {row['rate']:.2f}  [{low:.2f}, {high:.2f}]")
    for expert, row in report["experts_correct"].items():
        parsed = report["experts_parsed"][expert]["hits"]
        print(f"expert {expert:25s} correct {row['hits']}/{row['n']}, parsed {parsed}")
    print(f"wall {wall:.0f} s, failed tasks {len(result.failed)}")
    sections["live_default_pool"] = report
    return finish(sections, args)


def finish(sections: dict, args) -> dict:
    """Write the sections into the results file (not on a dry run)."""
    if sections and not args.dry_run:
        current = json.loads(args.out.read_text()) if args.out.is_file() else {}
        current.update(sections)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(current, indent=2) + "\n")
        print(f"wrote {', '.join(sections)} into {args.out}")
    return sections


if __name__ == "__main__":
    main()
