"""Task ids: the one place they are built and read.

    q1/expert/phi-3            an expert's answer to question q1 (sample 0)
    q1/s2/expert/phi-3         ... in sample 2 (an evaluation's ``--samples``)
    q1/aggregate               the aggregation of question q1
    q1/s2/m/symbolic/aggregate ... of sample 2 for one method of an evaluation

A run store and the generation cache key generations by what was asked, never by task id, so
ids only need to be unique within one run.
"""

from __future__ import annotations

AGGREGATE = "aggregate"
EXPERT = "expert"


def _prefix(question_id: str, sample: int) -> str:
    return f"{question_id}/s{sample}" if sample else question_id


def expert_task_id(question_id: str, expert: str, sample: int = 0) -> str:
    """The task of ``expert`` answering ``question_id`` (in ``sample``)."""
    return f"{_prefix(question_id, sample)}/{EXPERT}/{expert}"


def aggregate_task_id(question_id: str, sample: int = 0, method: str | None = None) -> str:
    """The aggregation task of ``question_id`` (in ``sample``, for an evaluation's ``method``)."""
    where = f"/m/{method}" if method else ""
    return f"{_prefix(question_id, sample)}{where}/{AGGREGATE}"


def is_aggregate(task_id: str) -> bool:
    return task_id.endswith(f"/{AGGREGATE}")


def question_of(task_id: str) -> str:
    """The question id of a sample-0 task without a method (the SDK's and the service's tasks)."""
    if is_aggregate(task_id):
        return task_id[: -len(AGGREGATE) - 1]
    return task_id.rsplit(f"/{EXPERT}/", 1)[0]


__all__ = ["aggregate_task_id", "expert_task_id", "is_aggregate", "question_of"]
