"""The README's SDK examples run as written, each saved to a file and run with ``python example.py``:
the warm session (answer, summary, a resumable batch) and the async twins."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sdk_examples() -> list[str]:
    """The README's Python blocks that are whole SDK scripts (they import the Orchestrator and
    have the ``__main__`` guard vLLM's child processes need)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "from orchestrator import Orchestrator" in b and "__main__" in b]


def run_script(example: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")  # as written, run from the project folder
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done.stdout.strip().splitlines()


def test_the_readme_has_both_sdk_examples():
    examples = sdk_examples()
    assert len(examples) == 2 and "aanswer_batch" in examples[1]
    for example in examples:
        ast.parse(example)


@pytest.mark.real
def test_readme_sdk_example_runs_as_a_script(tmp_path):
    lines = run_script(sdk_examples()[0], tmp_path)
    assert any(line.startswith("Route: policy=") for line in lines) and len(lines) >= 6


@pytest.mark.real
def test_readme_async_example_runs_as_a_script(tmp_path):
    lines = run_script(sdk_examples()[1], tmp_path)
    answers = ast.literal_eval(lines[-1])  # the printed list of the two answers' texts
    assert isinstance(answers, list) and len(answers) == 2
