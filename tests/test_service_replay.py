"""``coe serve`` on the replay pool: real replay engines (recorded answers of six real models),
a real uvicorn server, answers compared with the SDK's in-process answers to the same questions."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from eval import load_benchmark
from orchestrator import Client, Orchestrator, Query, load_settings
from orchestrator.service import ServiceSettings, create_app
from orchestrator.settings import shipped_pool
from tests.live_server import serving, wait_ready

ASKED = {"policy": "topk", "k": 3, "aggregation": "majority"}


@pytest.mark.data
def test_the_service_answers_as_the_sdk_does_under_concurrent_load(data_dir, tmp_path):
    # votes only: a budget for the recorded experts, so the vLLM aggregator is not warmed at start
    core = load_settings(
        pool=shipped_pool("replay-small"), data_dir=data_dir, runs_dir=tmp_path / "runs", memory_budget_mb=1_000
    )
    items = load_benchmark("mmlu_pro").questions(data_dir, "test")[:60]
    queries = [Query(id=q.id, text=q.text, options=q.options) for q in items]
    with Orchestrator(core) as coe:
        expected = {a.question_id: a.choice for a in coe.answer_batch(queries, **ASKED)}
    assert sum(c is not None for c in expected.values()) > 50

    with serving(create_app(ServiceSettings(core=core))) as url:
        wait_ready(url)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                bodies = [{"question": q.text, "options": list(q.options), "id": q.id, **ASKED} for q in queries]
                return await asyncio.gather(*(client.post("/v1/answer", json=b) for b in bodies))

        replies = asyncio.run(burst())
        assert [r.status_code for r in replies] == [200] * len(queries)
        served = {r.json()["question_id"]: r.json()["choice"] for r in replies}
        assert served == expected  # the same choices, asked 60 at once over HTTP

        with Client(url) as client:
            batch = client.answer_batch(queries[:10], **ASKED)
        assert [a.choice for a in batch] == [expected[q.id] for q in queries[:10]]
        metrics = httpx.get(f"{url}/metrics").text
    batches = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("coe_batches_total"))
    assert batches < len(queries)  # requests waiting together ran together


@pytest.mark.data
def same_escalations(served, sdk) -> bool:
    """The same decisions, their confidences equal up to float noise (the embeddings of a batch
    may differ in the last bits with the batch's size)."""
    return [(e.round, e.leader, e.escalate) for e in served] == [(e.round, e.leader, e.escalate) for e in sdk] and all(
        a.confidence == pytest.approx(b.confidence, abs=1e-6)
        and (a.next_confidence is None) == (b.next_confidence is None)
        and (a.next_confidence is None or a.next_confidence == pytest.approx(b.next_confidence, abs=1e-6))
        for a, b in zip(served, sdk, strict=True)
    )


def test_a_cascade_served_over_http_climbs_as_the_sdk_does(data_dir, tmp_path):
    """The calibrated cascade of replay-mixed through ``coe serve``: the same answers, escalations
    and costs as the SDK's rounds, and the trace says which questions climbed."""
    asked = {"policy": "cascade", "aggregation": "majority"}
    core = load_settings(
        pool=shipped_pool("replay-mixed"), data_dir=data_dir, runs_dir=tmp_path / "runs", memory_budget_mb=1_000
    )
    items = load_benchmark("mmlu_pro").questions(data_dir, "test")[:40]
    queries = [Query(id=q.id, text=q.text, options=q.options) for q in items]
    with Orchestrator(core) as coe:
        expected = {a.question_id: a for a in coe.answer_batch(queries, **asked)}
    climbed = [a for a in expected.values() if len(a.trace.escalations) > 1]
    assert climbed and len(climbed) < len(queries)  # some questions climbed, not all
    with serving(create_app(ServiceSettings(core=core))) as url, Client(url) as client:
        wait_ready(url)
        served = client.answer_batch(queries, **asked)
    for answer in served:
        sdk = expected[answer.question_id]
        assert answer.choice == sdk.choice
        assert same_escalations(answer.trace.escalations, sdk.trace.escalations)
        assert answer.trace.cost == sdk.trace.cost > 0
