"""`coe profile` with live experts: the default pool's models answer validation questions on vLLM,
each loaded once, and the profile is stored in the pool directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from orchestrator.pools.settings import PROJECT_ROOT


def test_live_profile_of_default_pool(tmp_path, cache_dir, data_dir):
    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "default", pool)
    env = {**os.environ, "COE_CACHE_DIR": str(cache_dir), "COE_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "profile",
            "--pool",
            str(pool),
            "-b",
            "mmlu_pro",
            "--split",
            "validation",
            "-n",
            "6",
            "--no-classifier",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "profile (live, 6 questions)" in done.stdout
    profile = json.loads((pool / "profiles" / "profile.v1.json").read_text())
    assert sorted(profile["experts"]) == ["gemma3", "smollm2"]
    assert done.stderr.count("model loaded smollm2") == 1 and done.stderr.count("model loaded gemma3") == 1
