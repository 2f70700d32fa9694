"""The README's SDK example runs as written, saved to a file and run with ``python example.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.real
def test_readme_sdk_example_runs_as_a_script(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "Orchestrator(" in b and "__main__" in b)
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")  # as written, run from the project folder
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("Route: policy=") for line in lines) and len(lines) >= 6
