"""A warm session on the default pool: the first ``answer()`` loads the models, the second reuses them.

    python benchmarks/session.py            # print the figures
    python benchmarks/session.py --write    # also write benchmarks/results/session.json

Goal (issue 9): the second call loads nothing and takes under 5 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "session.json"


def measure(pool: str | None, questions: list[str]) -> dict:
    from orchestrator import Orchestrator, load_settings

    settings = load_settings(pool=pool)
    out: dict = {"pool": str(settings.pool), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}
    with Orchestrator(settings) as coe:
        for label, question in zip(("first", "second"), questions, strict=True):
            started = time.perf_counter()
            answer = coe.answer(question)
            out[label] = {
                "question": question,
                "seconds": round(time.perf_counter() - started, 2),
                "loads": answer.trace.loads,
                "load_seconds": round(answer.trace.timings.load, 2),
                "answer": answer.text.strip()[:200],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=None, help="pool directory (default: settings.pool, the default pool)")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = parser.parse_args()
    result = measure(args.pool, ["Which planet is the largest?", "Is a tomato a fruit or a vegetable?"])
    for label in ("first", "second"):
        r = result[label]
        print(f"{label}: {r['seconds']:.1f} s, {r['loads']} load(s) ({r['load_seconds']:.1f} s loading)")
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
