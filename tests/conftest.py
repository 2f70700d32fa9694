"""Shared fixtures: where the data is, and the fast-tier pool of fake experts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batching import ExpertSpec
from eval.data import replay_path
from orchestrator.pools.settings import load_settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def need_path(path: Path) -> Path:
    """Skip when ``path`` is missing, except under CI=true where missing data is a failure."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f"required data {path} is missing (CI=true)")
        pytest.skip(f"data {path} not present")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return need_path(load_settings().data_dir)


@pytest.fixture(scope="session")
def replay_file(data_dir: Path) -> Path:
    return need_path(replay_path(data_dir))


@pytest.fixture
def replay_spec():
    """Make a replay ExpertSpec for one recorded model of a given file (recordings of ``benchmark``)."""

    def make(path: Path, model: str, name: str | None = None, benchmark: str = "mmlu_pro") -> ExpertSpec:
        source = {"kind": "replay", "path": path, "model": model, "benchmark": benchmark}
        return ExpertSpec(name=name or model.lower(), source=source)

    return make


@pytest.fixture
def vllm_spec():
    """Make a vLLM ExpertSpec; used by fast tests with FakeEngine standing in for vLLM."""

    def make(name: str, model: str = "packaged:smollm2-135m-instruct", memory_mb: float = 1000) -> ExpertSpec:
        return ExpertSpec(name=name, source={"kind": "vllm", "model": model}, memory_mb=memory_mb)

    return make


@pytest.fixture(autouse=True)
def _own_runs_dir(tmp_path, monkeypatch):
    """Each test's default runs folder (``COE_RUNS_DIR``) is its own, and with it the default
    generation cache (``runs_dir/store.sqlite``): no test is answered from another's generations,
    and nothing is written to the working folder. Settings given ``runs_dir`` or ``store`` keep theirs."""
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "coe-runs"))


@pytest.fixture(scope="session")
def view_runs(replay_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Runs for ``coe view``'s tests (tests/view_runs.py): two replay runs of ``coe eval`` and a
    hand-written synthesis run, by name."""
    from view_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("view-runs"))
