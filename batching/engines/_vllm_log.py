"""The root cause in a vLLM child's log, for ``VLLMEngine``'s errors."""

from __future__ import annotations

import re
from pathlib import Path

_ERROR_LINE = re.compile(r"\b[A-Z]\w*(Error|Exception|Exit)\b: |^coe error: ")  # vLLM's, or the child's own
_VLLM_PREFIX = re.compile(r"^(\(\w+ pid=\d+\) )?(ERROR|WARNING|INFO) \d\d-\d\d [\d:]+ \[[^\]]*\] ")


def log_cause(path: Path | None) -> str | None:
    """The last error line of the log at ``path`` (the root cause vLLM printed), on one line."""
    if path is None or not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 65536))
        lines = [" ".join(line.split()) for line in handle.read().decode("utf-8", "replace").splitlines()]
    errors = [_VLLM_PREFIX.sub("", line) for line in lines if _ERROR_LINE.search(line)]
    # vLLM's "engine is dead" errors only point back at the real one
    specific = [line for line in errors if "EngineDeadError" not in line and "EngineCore encountered" not in line]
    found = specific or errors or [line for line in lines if line]
    return found[-1][:500] if found else None
