"""Sampling with temperature and seeds on vLLM's CPU build: a 30-question run on the default pool
completes (vLLM 0.32's CPU engine crashed on per-request seeds once a prefill was chunked)."""

from __future__ import annotations

import shutil

import pytest

from eval.benchmarks import get_benchmark
from eval.splits import sample
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT


@pytest.mark.real
@pytest.mark.data
def test_thirty_questions_at_temperature_with_seeds_complete(tmp_path, data_dir):
    pool = tmp_path / "pool"
    shutil.copytree(PROJECT_ROOT / "pools" / "default", pool)
    toml = (pool / "pool.toml").read_text(encoding="utf-8")
    toml = toml.replace("temperature = 0.0", "temperature = 0.7\nseed = 11")
    (pool / "pool.toml").write_text(toml, encoding="utf-8")
    settings = load_settings(pool=pool, runs_dir=tmp_path / "runs", data_dir=data_dir)
    bench = get_benchmark("mmlu_pro")
    questions = sample(bench.questions(data_dir), 30, seed=3)
    with Orchestrator(settings) as coe:
        assert {s.sampling.temperature for s in coe.pool.specs.values()} == {0.7}
        answers = coe.answer_batch(questions, benchmark=bench, run_id="sampled")
    assert len(answers) == 30
    assert all(a.error is None for a in answers), [a.error for a in answers if a.error][:3]
    failed = [e.error for a in answers for e in a.trace.experts if e.error]
    assert not failed, failed[:3]
    assert all(a.trace.aggregation is not None and a.trace.aggregation.fallback is None for a in answers)
