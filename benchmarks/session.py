"""A warm session on the default pool: the first ``answer()`` loads the models, the later ones reuse them.

    python benchmarks/session.py [--seconds 3]   # print the figures
    python benchmarks/session.py --write         # also write benchmarks/results/session.json

One ``with Orchestrator(...)`` answers a first question (both models load), then ``--seconds``
more questions, one ``answer()`` each: every one of those is a warm session's second answer
(no load). Each answer's wall time is reported with its trace's split (routing, the experts'
slowest generation, the aggregation) and tokens; the second answers' median, lowest and
highest, and the load average before and after (the machine is shared). No generation cache
(each question is new anyway), a fresh runs folder, and a memory budget of 16,000 MB (the
default pool's two models side by side, whatever other work holds when the session starts).

Goal (issue 22): a warm session's second answer on the default pool in 4 s or less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "session.json"
QUESTIONS = [
    "Which planet is the largest?",
    "Is a tomato a fruit or a vegetable?",
    "What do bees make?",
    "How many legs does a spider have?",
    "What is the capital of Japan?",
    "Why is the sky blue?",
    "Who wrote Romeo and Juliet?",
    "What gas do plants take in?",
]


def figures(question: str, answer, seconds: float) -> dict:
    trace = answer.trace
    return {
        "question": question,
        "seconds": round(seconds, 2),
        "loads": trace.loads,
        "load_seconds": round(trace.timings.load, 2),
        "route_s": round(trace.timings.route, 2),
        "experts_s": round(trace.timings.experts, 2),
        "aggregate_s": round(trace.timings.aggregate, 2),
        "expert_tokens": {e.expert: e.tokens_out for e in trace.experts},
        "aggregator_tokens": trace.aggregation.tokens_out if trace.aggregation is not None else 0,
        "answer": answer.text.strip()[:200],
    }


def measure(pool: str | None, questions: list[str]) -> dict:
    from orchestrator import Orchestrator, load_settings

    out: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as runs:
        # both models side by side, as on an idle 24 GiB machine, whatever other work holds now
        settings = load_settings(pool=pool, runs_dir=Path(runs), cache="off", memory_budget_mb=16000)
        out["pool"] = settings.pool.name
        answers = []
        with Orchestrator(settings) as coe:
            for question in questions:
                started = time.perf_counter()
                answer = coe.answer(question)
                answers.append(figures(question, answer, time.perf_counter() - started))
                got = answers[-1]
                print(
                    f"{got['seconds']:5.1f} s (experts {got['experts_s']:.1f} s, {got['expert_tokens']} tokens; "
                    f"aggregation {got['aggregate_s']:.1f} s, {got['aggregator_tokens']} tokens)  {question}",
                    flush=True,
                )
    out["load_average_end"] = os.getloadavg()[0]
    out["first"], out["second"] = answers[0], answers[1:]
    seconds = sorted(a["seconds"] for a in answers[1:])
    out["second_seconds"] = {
        "each": [a["seconds"] for a in answers[1:]],
        "median": seconds[len(seconds) // 2],
        "lowest": seconds[0],
        "highest": seconds[-1],
        "goal": 4.0,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=None, help="pool directory (default: settings.pool, the default pool)")
    parser.add_argument("--seconds", type=int, default=3, help="second answers to time (each a new question)")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = parser.parse_args()
    if not 1 <= args.seconds < len(QUESTIONS):
        raise SystemExit(f"--seconds takes 1 to {len(QUESTIONS) - 1}")
    result = measure(args.pool, QUESTIONS[: 1 + args.seconds])
    first, second = result["first"], result["second_seconds"]
    print(f"first: {first['seconds']:.1f} s, {first['loads']} load(s) ({first['load_seconds']:.1f} s loading)")
    print(f"second answers: {second['each']} s (median {second['median']}, goal {second['goal']})")
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
