"""Real tier: every test here loads real models with vLLM or starts real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.pools.settings import load_settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """Converted default models live here (COE_CACHE_DIR or ~/.cache/symbolic-coe), reused across runs."""
    path = load_settings().cache_dir
    path.mkdir(parents=True, exist_ok=True)
    return path
