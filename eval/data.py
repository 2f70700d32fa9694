"""Where the shared data lives: ``COE_DATA_DIR``, else ``../shared/data`` beside the project."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    env = os.environ.get("COE_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def replay_path() -> Path:
    return data_dir() / "replay" / "mmlu_pro_replay.jsonl.gz"
