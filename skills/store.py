"""Profiles on disk: ``<pool_dir>/profiles/<name>.v<N>.json``, never overwritten."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import ValidationError

from common.errors import ConfigError, NotFound
from skills.profile import Profile

PROFILES = "profiles"
_FILE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\.v(?P<version>\d+)\.json$")


def _versions(folder: Path, name: str) -> dict[int, Path]:
    out = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _FILE.match(path.name)
            if match and match["name"] == name:
                out[int(match["version"])] = path
    return out


def save_profile(profile: Profile, pool_dir: Path) -> Path:
    """Write ``profile`` as the next version of its name; returns the new file."""
    folder = Path(pool_dir) / PROFILES
    folder.mkdir(parents=True, exist_ok=True)
    text = profile.model_dump_json(indent=1)
    while True:
        version = max(_versions(folder, profile.name), default=0) + 1
        path = folder / f"{profile.name}.v{version}.json"
        try:
            with path.open("x", encoding="utf-8") as out:  # "x": never overwrite a version
                out.write(text)
            return path
        except FileExistsError:  # another writer took this version: take the next
            continue


def latest_profile_path(pool_dir: Path, name: str = "profile") -> Path:
    folder = Path(pool_dir) / PROFILES
    versions = _versions(folder, name)
    if not versions:
        raise NotFound(f"no profile named {name!r} in {folder}")
    return versions[max(versions)]


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file; a malformed one raises ConfigError naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"profile file {path} does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "profile"
        raise ConfigError(f"{path}: {field}: {error['msg']}") from exc


def load_latest_profile(pool_dir: Path, name: str = "profile") -> Profile:
    return load_profile(latest_profile_path(pool_dir, name))
