"""Each package's public surface is its __all__: every listed name exists, nothing is listed twice,
and importing a package does no heavy work (vLLM, torch, sentence-transformers stay unloaded)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "common",
    "batching",
    "batching.engines",
    "eval",
    "skills",
    "router",
    "aggregators",
    "orchestrator",
    "orchestrator.stores",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_complete(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    assert sorted(exported) == sorted(n for n in exported if hasattr(module, n))


def test_imports_are_light():
    code = (
        "import sys; import orchestrator, router, skills, aggregators, batching, eval;"
        "from orchestrator import Orchestrator, load_settings;"
        "Orchestrator(load_settings(memory_budget_mb=None)).memory();"
        "heavy = [m for m in ('vllm', 'torch', 'sentence_transformers', 'sklearn', 'transformers', 'ray') "
        "if m in sys.modules];"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
