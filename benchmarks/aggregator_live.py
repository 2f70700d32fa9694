"""The LLM aggregator end to end on the default pool, with real vLLM on this machine.

Twenty MMLU-Pro test questions (``eval.splits.sample``, seeded, among those whose prompt fits
the models' context) are answered through the SDK, ``Orchestrator.answer_batch`` with policy
``all``: the experts of pools/default (smollm2, gemma3) answer, then the pool's aggregator
(SmolLM2-135M-Instruct) synthesises their answers, all scheduled by the batch planner.
Reported, from each ``Answer``: how often the final choice matches the experts' majority
(``aggregators.majority`` over ``answer.trace.experts``), any expert, and the gold answer,
with parse rates and the run's loads and wall time. Answers are compared and judged by the
question's judge (``Benchmark.judge``), the votes counted by it.

    python benchmarks/aggregator_live.py [--n 20] [--seed 0]          # prints the figures
    python benchmarks/aggregator_live.py --dry-run                     # FakeEngine: plumbing only
    python benchmarks/aggregator_live.py --select 30 [--skip-answer] [--pool-dir D]
    python benchmarks/aggregator_live.py --write                       # and writes them

``--select N`` also chooses the aggregator among the pool's models on the synthetic task:
N questions of the train part of the split benchmarks/aggregation.py uses
(``eval.splits.split``, seed 0), each with one correct and two incorrect recorded answers of
the replay small pool (right or wrong by the question's judge on the answer each recording
states, not by its own ``correct`` flag), run through ``Orchestrator.run_tasks``; ``--pool-dir`` saves the
choice as D/aggregator/choice.vN.json.

With ``--write`` the figures go into benchmarks/results/aggregation.json under
``live_default_pool`` (and ``live_aggregator_selection``); a dry run never writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from aggregators import (
    AggregatorChoice,
    ExpertAnswer,
    SynthesisOptions,
    ValidationItem,
    majority,
    records_for,
    select_aggregator,
    wilson_interval,
)
from batching import FakeEngine
from common.recordings import replay_book
from common.requests import Generation, stated_answer
from common.tasks import Task
from eval import Benchmark, Question, get_benchmark, replay_path, sample, split
from eval.benchmarks import format_options
from orchestrator import Answer, Orchestrator, load_settings
from orchestrator.artefacts import PoolArtefacts
from orchestrator.pool import small_replay_models
from skills import question_skills

log = logging.getLogger("benchmarks.aggregator_live")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "aggregation.json"
MAX_PROMPT_CHARS = 2400  # question + options; leaves room in 2048 tokens for two answers


def pick_questions(bench: Benchmark, questions: Sequence[Question], n: int, seed: int) -> list[Question]:
    """``n`` questions drawn by ``eval.splits.sample`` among those whose prompt fits."""
    fitting = [q for q in questions if len(bench.prompt(q)) <= MAX_PROMPT_CHARS]
    return sample(fitting, n, seed)


def rate(hits: Sequence[bool]) -> dict:
    low, high = wilson_interval(sum(hits), len(hits))
    return {
        "rate": round(sum(hits) / max(1, len(hits)), 4),
        "ci95": [round(low, 4), round(high, 4)],
        "n": len(hits),
        "hits": sum(hits),
    }


def score(bench: Benchmark, questions: Sequence[Question], answers: Sequence[Answer], experts: Sequence[str]) -> dict:
    """The final choices against the experts' majority, any expert's choice and the gold answer,
    each comparison the question's judge's."""
    by_id = {q.id: q for q in questions}
    rows, agg_gold, agg_major, agg_any, agg_parsed, major_gold = [], [], [], [], [], []
    expert_gold: dict[str, list[bool]] = {e: [] for e in experts}
    expert_parsed: dict[str, list[bool]] = {e: [] for e in experts}
    for answer in answers:
        question = by_id[answer.question_id]
        judge = bench.judge(question)
        calls = answer.trace.experts
        arrived = [ExpertAnswer(expert=c.expert, choice=c.choice) for c in calls if c.error is None]
        said = {a.expert: a.choice for a in arrived}
        for expert in experts:
            expert_parsed[expert].append(said.get(expert) is not None)
            expert_gold[expert].append(judge.correct(said.get(expert), question.answer))
        vote = majority(arrived, judge=judge).choice if arrived else None
        choice = answer.choice if answer.error is None else None
        agg_parsed.append(choice is not None)
        agg_gold.append(judge.correct(choice, question.answer))
        agg_major.append(judge.same(choice, vote))
        agg_any.append(any(judge.same(choice, s) for s in said.values()))
        major_gold.append(judge.correct(vote, question.answer))
        rows.append(
            {
                "question_id": answer.question_id,
                "gold": question.answer,
                "experts": said,
                "majority": vote,
                "aggregator": choice,
                "error": answer.error,
            }
        )
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


def select(
    n: int,
    seed: int,
    answer_tokens: int,
    candidates: Sequence[str],
    run: Callable[[Sequence[Task]], dict[str, Generation]],
    data_dir: Path,
) -> dict:
    """The synthetic aggregation task on the replay small pool's recorded answers."""
    bench = get_benchmark("mmlu_pro")
    train, _ = split(bench.questions(data_dir), 0.5, seed=0)
    fitting = [q for q in train if len(bench.prompt(q)) <= MAX_PROMPT_CHARS]
    experts = small_replay_models()
    records = records_for(replay_book(replay_path(data_dir)), {m: m for m in experts})
    items = {
        q.id: ValidationItem(
            q.id,
            f"{q.text.strip()}\n\nOptions:\n{format_options(q.options)}",
            q.answer,
            question_skills(q)[0],
            bench.answer_format,
            partial(bench.extract, q),
            bench.judge(q),
        )
        for q in fitting
    }

    class Item:  # eval.splits keys items by ``id``
        def __init__(self, item: ValidationItem) -> None:
            self.id, self.item = item.question_id, item

    def right(question: Question, model: str) -> bool:
        """The judge's verdict on the answer the recording states (its pred, else its text's)."""
        record = records[model][question.id]
        return bench.check(question, stated_answer(record.pred, record.text, items[question.id].extract))

    # draw n among the questions that can make a case (one right, two wrong answers)
    usable = []
    for q in fitting:
        verdicts = [right(q, m) for m in experts if q.id in records[m]]
        if sum(verdicts) >= 1 and len(verdicts) - sum(verdicts) >= 2:
            usable.append(Item(items[q.id]))
    drawn = [wrapped.item for wrapped in sample(usable, n, seed)]
    options = SynthesisOptions(answer_limit=answer_tokens, limit_unit="tokens", seed=seed)
    choice = select_aggregator(candidates, drawn, records, run, options=options, seed=seed)
    return choice.model_dump(mode="json")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="Questions.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the question draw.")
    parser.add_argument(
        "--answer-tokens", type=int, default=200, help="Bound per quoted answer in the selection task, tokens."
    )
    parser.add_argument("--dry-run", action="store_true", help="FakeEngine instead of vLLM; never writes.")
    parser.add_argument("--select", type=int, default=0, help="Also choose the aggregator (N cases).")
    parser.add_argument("--skip-answer", action="store_true", help="Only the selection.")
    parser.add_argument("--pool", type=Path, default=ROOT / "pools" / "default", help="The pool measured.")
    parser.add_argument(
        "--pool-dir", type=Path, default=None, help="Save the selection as DIR/aggregator/choice.vN.json."
    )
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=8000.0,
        help="Memory models may hold at once (8000: one model at a time on this machine).",
    )
    parser.add_argument("--write", action="store_true", help=f"Write the figures into {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where --write writes.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    settings = load_settings(pool=args.pool, memory_budget_mb=args.budget_mb)
    coe = Orchestrator(settings, engine_factory=FakeEngine if args.dry_run else None)
    sections = {}
    if args.select:
        started = time.perf_counter()
        choice = select(
            args.select,
            args.seed,
            args.answer_tokens,
            [m.name for m in coe.pool.models],
            coe.run_tasks,
            settings.data_dir,
        )
        choice["wall_seconds"] = round(time.perf_counter() - started, 1)
        sections["live_aggregator_selection"] = choice
        for name, row in choice["candidates"].items():
            print(
                f"selection {name:10s} {row['correct']}/{row['n']} = {row['accuracy']:.2f}  "
                f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]  failed {row['failed']}"
            )
        print(f"selection best: {choice['best']}")
        if args.pool_dir is not None and not args.dry_run:
            stored = {k: v for k, v in choice.items() if k != "wall_seconds"}
            print(f"saved {PoolArtefacts(args.pool_dir).save_choice(AggregatorChoice.model_validate(stored))}")
    if not args.skip_answer:
        bench = get_benchmark("mmlu_pro")
        questions = pick_questions(bench, bench.questions(settings.data_dir), args.n, args.seed)
        log.info("plan:\n%s", coe.plan(questions, policy="all").render())
        started = time.perf_counter()
        answers = coe.answer_batch(questions, benchmark=bench, policy="all")
        wall = time.perf_counter() - started
        report = score(bench, questions, answers, coe.pool.expert_names)
        report.update(
            {
                "pool": coe.pool.name,
                "experts": coe.pool.expert_names,
                "aggregator": coe.pool.aggregator.name,
                "engine": "fake (dry run)" if args.dry_run else "vllm",
                "questions": len(questions),
                "question_draw": (
                    f"eval.splits.sample, seed {args.seed}, among MMLU-Pro test questions with prompt <= "
                    f"{MAX_PROMPT_CHARS} chars"
                ),
                "answered_by": "Orchestrator.answer_batch, policy all",
                "failed": sum(a.error is not None for a in answers),
                "loads": max((a.trace.loads for a in answers), default=0),
                "wall_seconds": round(wall, 1),
            }
        )
        for key in (
            "aggregator_matches_majority",
            "aggregator_matches_any_expert",
            "aggregator_correct",
            "aggregator_parsed",
            "majority_correct",
        ):
            row = report[key]
            low, high = row["ci95"]
            print(f"{key:32s} {row['hits']}/{row['n']} = {row['rate']:.2f}  [{low:.2f}, {high:.2f}]")
        for expert, row in report["experts_correct"].items():
            parsed = report["experts_parsed"][expert]["hits"]
            print(f"expert {expert:25s} correct {row['hits']}/{row['n']}, parsed {parsed}")
        print(f"wall {wall:.0f} s, {report['loads']} loads, failed answers {report['failed']}")
        sections["live_default_pool"] = report
    if sections and args.write and not args.dry_run:
        current = json.loads(args.out.read_text()) if args.out.is_file() else {}
        current.update(sections)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(current, indent=2) + "\n")
        print(f"wrote {', '.join(sections)} into {args.out}")
    return sections


if __name__ == "__main__":
    main()
