"""What the replay benchmarks share: the replay pool measured by votes, and every expert's choices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eval import Benchmark, Question
from orchestrator import Orchestrator, Pool, Settings, load_pool
from orchestrator.settings import shipped_pool

Choices = dict[str, dict[str, str | None]]
"""Question id -> expert -> the choice extracted from its answer (None: unreadable)."""

POOL_DIR = shipped_pool("replay-small")


def replay_pool(settings: Settings, directory: Path, pool_dir: Path = POOL_DIR) -> Pool:
    """The replay pool with its artefacts kept in ``directory`` and its first expert as
    aggregator: replay cannot write new text, and what is measured here are votes."""
    pool = load_pool(pool_dir, settings.data_dir)
    header = pool.pool.model_copy(update={"aggregator": pool.expert_names[0]})
    return pool.model_copy(update={"pool": header, "directory": directory})


def expert_choices(coe: Orchestrator, questions: Sequence[Question], bench: Benchmark) -> Choices:
    """Every expert's choice per question, from the SDK's answers with policy ``all``; a question
    some expert could not answer is left out."""
    experts = set(coe.pool.expert_names)
    out: Choices = {}
    for answer in coe.answer_batch(questions, benchmark=bench, policy="all"):
        calls = answer.trace.experts
        complete = {c.expert for c in calls} == experts and all(c.error is None for c in calls)
        if answer.error is None and complete:
            out[answer.question_id] = {c.expert: c.choice for c in calls}
    return out
