"""Profiles on disk: ``<pool_dir>/profiles/<name>.v<N>.json``, never overwritten."""

from __future__ import annotations

from pathlib import Path

from common.artefacts import latest, read_model, write_new_version
from common.errors import NotFound
from skills.profile import Profile

PROFILES = "profiles"


def save_profile(profile: Profile, pool_dir: Path) -> Path:
    """Write ``profile`` as the next version of its name; returns the new file."""
    return write_new_version(Path(pool_dir) / PROFILES, profile.name, profile.model_dump_json(indent=1))


def latest_profile_path(pool_dir: Path, name: str = "profile") -> Path:
    return latest(Path(pool_dir) / PROFILES, name, f"profile named {name!r}")


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file; a malformed one raises ConfigError naming file and field."""
    if not Path(path).is_file():
        raise NotFound(f"profile file {path} does not exist")
    return read_model(path, Profile)


def load_latest_profile(pool_dir: Path, name: str = "profile") -> Profile:
    return load_profile(latest_profile_path(pool_dir, name))
