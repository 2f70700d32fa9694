"""The output folder of ``coe eval``: checked before any work, written only once the run starts
generating, and left as it was found when a run fails before anything was generated.

    out/
      config.json         what the run was asked (``--resume`` must ask the same)
      generations.sqlite  every finished generation (the run store): what a resumed run reuses
      run.json, results.jsonl, report.md, *.png   written when the run finishes
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, ValidationError

from batching.runstore import SQLiteRunStore
from common.artefacts import replace_file
from common.errors import BadInput

CONFIG_FILE = "config.json"
STORE_FILE = "generations.sqlite"
STORE_RUN_ID = "eval"


def check_out_dir(out: Path, config: BaseModel, resume: bool) -> None:
    """A new run needs an empty folder it can create or write in; ``--resume`` needs the same
    run's folder. Each problem is one line; nothing is written."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file, not a folder")
    stored = out / CONFIG_FILE
    if resume:
        if not stored.is_file():
            raise BadInput(f"--resume: {out} holds no evaluation run to continue (no {CONFIG_FILE})")
        try:
            before = type(config).model_validate_json(stored.read_text(encoding="utf-8"))
        except (ValidationError, ValueError, OSError) as exc:
            raise BadInput(f"--resume: {stored} is not a run configuration: {str(exc).splitlines()[0]}") from exc
        now, was = config.model_dump(), before.model_dump()
        changed = [k for k, v in now.items() if was.get(k) != v]
        if changed:
            diff = ", ".join(f"{k}={was.get(k)!r} (now {now[k]!r})" for k in changed)
            raise BadInput(f"--resume: {out} holds a different run: {diff}; repeat its command exactly")
        return
    if out.is_dir():
        if any(out.iterdir()):
            raise BadInput(f"--out {out} is not empty: use --resume to continue the run there, or choose another --out")
        _probe(out, f"--out {out}: cannot write in it")
        return
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"--out {out}: {ancestor} is a file, not a folder")
    _probe(ancestor, f"--out {out}: cannot create it in {ancestor}")


def _probe(folder: Path, message: str) -> None:
    """Make and remove a folder in ``folder`` (permissions alone do not tell: /proc, read-only mounts)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".coe-probe-", dir=folder))
    except OSError as exc:
        raise BadInput(f"{message} ({exc.strerror or exc})") from exc


def open_out_dir(out: Path, config: BaseModel, resume: bool) -> bool:
    """Create ``out`` and write the run's configuration (not on ``--resume``); True when the
    folder was created here. A folder that cannot be made is one line."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            replace_file(out / CONFIG_FILE, config.model_dump_json(indent=1) + "\n")
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot be written: {exc.strerror or exc}") from exc
    return created


def discard_if_unused(out: Path, store: SQLiteRunStore, created: bool, resume: bool) -> None:
    """After a failed run: when it stored no generation, remove what it wrote (the corrected
    command then starts afresh, without ``--resume``)."""
    if resume or store.count(STORE_RUN_ID) > 0:
        return
    store.close()
    for name in (CONFIG_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm"):
        (out / name).unlink(missing_ok=True)
    if created and not any(out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


__all__ = ["CONFIG_FILE", "STORE_FILE", "STORE_RUN_ID", "check_out_dir", "discard_if_unused", "open_out_dir"]
