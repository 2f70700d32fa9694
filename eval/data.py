"""Where files lie inside the shared data folder. The folder itself is a setting
(``Settings.data_dir``); callers pass it in."""

from __future__ import annotations

from pathlib import Path

REPLAY_FILE = Path("replay") / "mmlu_pro_replay.jsonl.gz"


def replay_path(data_dir: Path) -> Path:
    """The MMLU-Pro replay recordings inside ``data_dir``."""
    return Path(data_dir) / REPLAY_FILE
