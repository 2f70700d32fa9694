"""Versioned artefacts on disk: ``<folder>/<stem>.v<N>.json``, never overwritten, read back
validated into a pydantic model with one-line errors that name the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from common.errors import ConfigError, NotFound

M = TypeVar("M", bound=BaseModel)


def versions(folder: Path, stem: str) -> dict[int, Path]:
    """Version number -> JSON file, for every ``<stem>.v<N>.json`` in ``folder``."""
    pattern = re.compile(rf"^{re.escape(stem)}\.v(\d+)\.json$")
    if not Path(folder).is_dir():
        return {}
    return {int(m.group(1)): p for p in Path(folder).iterdir() if (m := pattern.match(p.name))}


def latest(folder: Path, stem: str, what: str) -> Path:
    """The newest version's file; NotFound (naming ``what``) when there is none."""
    found = versions(folder, stem)
    if not found:
        raise NotFound(f"no {what} in {folder}")
    return found[max(found)]


def write_new_version(folder: Path, stem: str, text: str) -> Path:
    """Write ``text`` as the next version of ``stem``; a version another writer took is skipped."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        path = folder / f"{stem}.v{max(versions(folder, stem), default=0) + 1}.json"
        try:
            with path.open("x", encoding="utf-8") as out:  # "x": never overwrite a version
                out.write(text)
            return path
        except FileExistsError:
            continue


def read_model(path: Path, model: type[M]) -> M:
    """Read and validate a JSON file; errors are ConfigError ``<file>: <field>: <problem>``."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or model.__name__
        raise ConfigError(f"{path}: {field}: {error['msg']}") from exc
