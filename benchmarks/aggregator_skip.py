"""Skipping the aggregator on consensus: how many aggregator calls it saves, what it does to
accuracy, and to wall time.

    votes       replay-small and replay-mixed, the evaluation half of MMLU-Pro, policy topk k=3,
                the experts' majority: how often the experts are unanimous (the calls a synthesis
                would save) and how accurate those unanimous answers are
    synthesis   the aggregator model writing answers, asked every time ("always") or only where
                the experts disagree ("skip"), on the same questions, each way in a fresh
                session (models loaded each time, no generation cache):
                - replay-small's recorded experts with its live SmolLM2 aggregator;
                - the default pool live (SmolLM2 and Gemma experts, SmolLM2 aggregating)

For each: calls_saved_ratio, accuracy_always, accuracy_skip, the paired difference (skip -
always, per question) with its 95% interval, and wall time both ways.

    python benchmarks/aggregator_skip.py [-n 120] [--replay-n 200]   # prints the figures
    python benchmarks/aggregator_skip.py --write                     # and writes results/aggregator_skip.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from eval import get_benchmark, partition, stratified_sample
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import shipped_pool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "aggregator_skip.json"


def paired(skip: list[bool], always: list[bool]) -> dict:
    """Mean of (skip - always) per question and its 95% interval (normal, paired)."""
    diffs = [int(s) - int(a) for s, a in zip(skip, always, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = 1.96 * math.sqrt(var / n) if n else 0.0
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)], "n": n}


def votes(pool: str, questions: list, bench) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        settings = load_settings(pool=shipped_pool(pool), runs_dir=Path(runs), cache="off")
        coe = Orchestrator(settings)
        answers = coe.answer_batch(questions, benchmark=bench, policy="topk", k=3, aggregation="majority")
    by_id = {q.id: q for q in questions}
    unanimous = [a for a in answers if a.trace.aggregation is not None and a.trace.aggregation.confidence == 1.0]
    right = [bench.check(by_id[a.question_id], a.choice) for a in answers]
    right_unanimous = [bench.check(by_id[a.question_id], a.choice) for a in unanimous]
    return {
        "questions": len(answers),
        "calls_saved_ratio": round(len(unanimous) / len(answers), 4),
        "accuracy_always": round(sum(right) / len(right), 4),
        "accuracy_skip": round(sum(right) / len(right), 4),  # a vote is the same answer either way
        "accuracy_of_unanimous": round(sum(right_unanimous) / max(1, len(right_unanimous)), 4),
        "note": "votes: skipping changes no answer (the agreed answer is the vote); it saves the calls a "
        "synthesis would make",
    }


def synthesis(pool: str, questions: list, bench, policy: str, k: int | None) -> dict:
    runs = {}
    for way, skip in (("always", False), ("skip", True)):
        with tempfile.TemporaryDirectory() as folder:
            settings = load_settings(pool=shipped_pool(pool), runs_dir=Path(folder), cache="off")
            coe = Orchestrator(settings)
            started = time.perf_counter()
            answers = coe.answer_batch(questions, benchmark=bench, policy=policy, k=k, skip_consensus=skip)
            runs[way] = (answers, time.perf_counter() - started)
    by_id = {q.id: q for q in questions}
    right = {way: [bench.check(by_id[a.question_id], a.choice) for a in answers] for way, (answers, _) in runs.items()}
    skipped = sum(1 for a in runs["skip"][0] if a.trace.aggregation is not None and a.trace.aggregation.skipped)
    return {
        "questions": len(questions),
        "policy": policy,
        "k": k,
        "calls_saved_ratio": round(skipped / len(questions), 4),
        "accuracy_always": round(sum(right["always"]) / len(questions), 4),
        "accuracy_skip": round(sum(right["skip"]) / len(questions), 4),
        "paired_difference": paired(right["skip"], right["always"]),
        "wall_s": {way: round(seconds, 1) for way, (_, seconds) in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=120, help="Questions of the live default-pool run (>= 100).")
    parser.add_argument("--replay-n", type=int, default=200, help="Questions of the replay + live aggregator run.")
    parser.add_argument("--skip-live", action="store_true", help="Only the vote figures (no model runs).")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bench = get_benchmark("mmlu_pro")
    data_dir = load_settings().data_dir
    evaluation = partition(bench.questions(data_dir, "test"))[1]
    out: dict = {"benchmark": "aggregator_skip", "load_average_start": os.getloadavg()[0], "votes": {}}
    for pool in ("replay-small", "replay-mixed"):
        out["votes"][pool] = votes(pool, evaluation, bench)
        print(pool, "votes", json.dumps(out["votes"][pool]))
    if not args.skip_live:
        sample = stratified_sample(evaluation, args.replay_n, 0)
        out["replay_small_live_aggregator"] = synthesis("replay-small", sample, bench, "topk", 3)
        print("replay-small + SmolLM2", json.dumps(out["replay_small_live_aggregator"]))
        sample = stratified_sample(evaluation, args.n, 0)
        out["default_live"] = synthesis("default", sample, bench, "all", None)
        print("default", json.dumps(out["default_live"]))
    out["load_average_end"] = os.getloadavg()[0]
    if args.write:
        RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
