"""Versioned artefacts on disk: ``<folder>/<stem>.v<N>.json``, written atomically and never
overwritten, read back validated into a pydantic model with one-line errors that name the file
and the field.

A write goes to a temporary file in the same folder, is flushed to disk, then hard-linked to
the next free version name (a link never replaces an existing file), so a reader sees either
no version N or all of it, and two writers never take the same version.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from common.errors import ConfigError, NotFound, config_error

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


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_copy(folder: Path, stem: str, text: str | Iterable[str]) -> Path:
    """``text`` (or its pieces, one after another) in a new hidden file of ``folder`` (mode as
    the umask allows), flushed to disk."""
    while True:
        name = folder / f".{stem}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if isinstance(text, str):
                out.write(text)
            else:
                out.writelines(text)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        name.unlink(missing_ok=True)
        raise
    return name


def replace_file(path: Path, text: str | Iterable[str]) -> Path:
    """Write ``path`` atomically, replacing what was there (readers see the old or the new file).
    ``text``: the content, or its pieces in order (written one after another, never joined in
    memory). A file system error is a ConfigError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = _temp_copy(path.parent, path.stem, text)
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written: {exc.strerror or exc}") from exc
    _fsync_dir(path.parent)
    return path


def write_new_version(folder: Path, stem: str, text: str | Callable[[int], str]) -> Path:
    """Write the next version of ``stem`` atomically and return its path (see ``_write_version``);
    a file system error is a ConfigError naming the folder."""
    try:
        return _write_version(Path(folder), stem, text)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write {stem}: {exc.strerror or exc}") from exc


def _write_version(folder: Path, stem: str, text: str | Callable[[int], str]) -> Path:
    """Write the next version of ``stem`` atomically and return its path.

    ``text`` is the content, or a function of the version number that renders it (for content
    that records its own version). A version another writer took meanwhile is skipped.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temp: Path | None = None
    try:
        while True:
            version = max(versions(folder, stem), default=0) + 1
            if temp is None or callable(text):
                if temp is not None:
                    temp.unlink(missing_ok=True)
                temp = _temp_copy(folder, stem, text(version) if callable(text) else text)
            path = folder / f"{stem}.v{version}.json"
            try:
                os.link(temp, path)  # fails if the name exists: a version is never overwritten
            except FileExistsError:
                continue
            _fsync_dir(folder)
            return path
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ConfigError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: not readable: {exc.strerror or exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_model(path: Path, model: type[M]) -> M:
    """Read and validate a JSON file; errors are ConfigError ``<file>: <field>: <problem>``."""
    raw = read_json(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, str(path)) from exc
    except ValueError as exc:  # a model's own check that is not a pydantic error (e.g. array shapes)
        raise ConfigError(f"{path}: {exc}") from exc
