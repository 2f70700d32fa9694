"""The README's main command (``coe eval mmlu_pro --limit 20`` on the default pool) runs as
written: real vLLM engines, each model loaded once, a report a person can read."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]


def readme_main_command() -> list[str]:
    first = re.search(r"```bash\n(.*?)\n", (ROOT / "README.md").read_text(encoding="utf-8")).group(1)
    command = shlex.split(first.split("&&", 1)[1])
    assert command[0] == ".venv/bin/coe", first
    return command[1:]


def test_readme_main_command_evaluates_the_default_pool(tmp_path: Path) -> None:
    argv = readme_main_command()
    assert argv[:2] == ["eval", "mmlu_pro"]
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (out,) = (tmp_path / "runs" / "eval").iterdir()
    run = json.loads((out / "run.json").read_text())
    limit = int(argv[argv.index("--limit") + 1])
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert run["questions"] == len(results) == limit
    assert len({r["category"] for r in results}) == 14  # stratified: every category
    assert run["model_loads"] == 2  # each of the two models loaded once
    ours = [r["methods"]["ours"] for r in results]
    assert all(m["aggregation"] == "synthesis" and m["aggregator"] == "smollm2" for m in ours)
    assert sum(m["fallback"] is None for m in ours) >= limit // 2  # the aggregator wrote most answers
    assert (out / "report.md").read_text().startswith("# mmlu_pro (test)")
    assert "ours" in done.stdout and f"wrote {out / 'report.md'}" in done.stdout
