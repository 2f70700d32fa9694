"""The evaluation runs ``coe view``'s tests look at: two real replay runs made by ``coe eval`` on
the shipped pools (recorded MMLU-Pro answers, a seeded stratified sample) and one written by hand
for what replay runs cannot hold (an aggregator's text, a consensus skip, a failed expert, a
question without a gold answer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eval.results import ExpertResult, MethodInfo, MethodResult, QuestionResult, RunInfo, write_results

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 40
REPLAY_RUNS = {
    # run folder: coe eval's arguments after the benchmark
    "small-majority": ("--pool", "pools/replay-small", "--aggregator", "majority"),
    "mixed-cascade": ("--pool", "pools/replay-mixed", "--policy", "cascade", "--aggregator", "majority"),
}


def make_runs(folder: Path) -> dict[str, Path]:
    """The replay runs (``coe eval`` as a user types it, its own process) and the hand-written one
    under ``folder`` (``folder/NAME``), by name."""
    runs = {}
    env = {**os.environ, "COE_RUNS_DIR": str(folder / "coe-runs")}
    for name, args in REPLAY_RUNS.items():
        out = folder / name
        argv = ["eval", "mmlu_pro", *args, "--baselines", "-n", str(LIMIT), "--out", str(out)]
        done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=ROOT, env=env, capture_output=True)
        assert done.returncode == 0, f"coe {' '.join(argv)}: {done.stderr.decode()[-2000:]}"
        runs[name] = out
    runs["synthetic"] = write_synthetic(folder / "synthetic")
    return runs


def _expert(name: str, answer: str | None, right: bool | None, error: str | None = None) -> ExpertResult:
    text = "" if error else f"Reasoning of {name}, at length.\nThe answer is ({answer})."
    return ExpertResult(expert=name, text=text, answer=answer, correct=right, tokens_in=50, tokens_out=20, error=error)


def write_synthetic(out: Path) -> Path:
    """Three questions answered by a synthesis run: q-skip (the experts agree, so the aggregator
    was skipped), q-text (they disagree; the aggregator wrote an answer, wrong), q-nogold (no gold
    answer: not scored; one expert failed)."""
    experts = ("e1", "e2", "e3")
    info = RunInfo(
        run_id="synthetic",
        benchmark="mmlu_pro",
        benchmark_version="1",
        split="test",
        answer_kind="letter",
        pool="hand-written",
        pool_dir=str(out),
        policy="topk",
        k=3,
        aggregator="synthesis",
        questions=3,
        questions_in_split=3,
        methods=[MethodInfo(name="ours", description="topk, synthesis", policy="topk", k=3, aggregation="synthesis")],
    )

    def ours(final: str | None, right: bool | None, **more: object) -> dict[str, MethodResult]:
        return {
            "ours": MethodResult.model_validate(
                {"experts": experts, "final": final, "correct": right, "aggregation": "synthesis", **more}
            )
        }

    rows = [
        QuestionResult(
            question_id="q-skip",
            benchmark="mmlu_pro",
            category="law",
            gold="B",
            skills={"law": 0.9},
            confidence=0.9,
            experts=tuple(_expert(e, "B", True) for e in experts),
            methods=ours("B", True, skipped="consensus: 3 of 3 experts agree"),
        ),
        QuestionResult(
            question_id="q-text",
            benchmark="mmlu_pro",
            category="math",
            gold="A",
            experts=(_expert("e1", "A", True), _expert("e2", "C", False), _expert("e3", "C", False)),
            methods=ours("C", False, aggregator="agg", text="Weighing the three answers: (C)."),
        ),
        QuestionResult(
            question_id="q-nogold",
            benchmark="mmlu_pro",
            category="math",
            gold=None,
            experts=(_expert("e1", "D", None), _expert("e2", "D", None), _expert("e3", None, None, "timed out")),
            methods=ours("D", None, aggregator="agg", text="(D)"),
        ),
    ]
    write_results(out, info, rows)
    return out
