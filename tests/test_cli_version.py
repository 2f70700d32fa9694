"""``coe --version``: the installed distribution's version, else the one pyproject.toml declares."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest

from orchestrator.cli import main
from orchestrator.settings import PROJECT_ROOT, project_version


def version_line(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_version_prints_the_installed_distribution(capsys):
    assert version_line(capsys) == f"coe {importlib.metadata.version('symbolic-coe')}\n"


def test_version_falls_back_to_pyproject(capsys, monkeypatch):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert project_version() == declared
    assert version_line(capsys) == f"coe {declared}\n"
