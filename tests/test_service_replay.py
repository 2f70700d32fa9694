"""``coe serve`` on the replay pool: real replay engines (recorded answers of six real models),
a real uvicorn server, answers compared with the SDK's in-process answers to the same questions;
a question asked by its text alone (the SDK, chat completions) is answered from the recordings of
the MMLU-Pro item it is, and one of another benchmark is a replay miss."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from batching import FakeEngine, make_engine
from common.errors import ReplayMiss
from common.recordings import replay_book
from eval import load_benchmark, replay_path
from orchestrator import Client, Orchestrator, Query, load_settings
from orchestrator.pipeline.items import squash
from orchestrator.pools.pool import recorded_models
from orchestrator.pools.settings import shipped_pool
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
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


def _unique_plurality(data_dir, models, count=200):
    """The first MMLU-Pro test item whose text no other item has and on which the recorded
    ``models`` have one most common letter (no tie): the item and that letter."""
    items = load_benchmark("mmlu_pro").questions(data_dir, "test")
    texts = Counter(squash(q.text) for q in items)
    book = replay_book(replay_path(data_dir))
    for item in items[:count]:
        preds = Counter(book.get(m, item.id).pred for m in models)
        (top, n), *rest = preds.most_common()
        if texts[squash(item.text)] == 1 and top is not None and (not rest or rest[0][1] < n):
            return item, top
    raise AssertionError("no item with a clear plurality among the first ones")


@pytest.mark.data
def test_the_sdk_answers_a_question_text_with_the_recorded_models_vote(data_dir, tmp_path):
    """``answer("question text")`` on replay-small: the item the text is, the recorded answers of
    the six models, their majority; the same as asking by the item's id."""
    core = load_settings(pool=shipped_pool("replay-small"), data_dir=data_dir, runs_dir=tmp_path / "runs")
    with Orchestrator(core) as coe:
        models = recorded_models(coe.pool)
        item, vote = _unique_plurality(data_dir, models.values())
        by_text = coe.answer(" ".join(item.text.split()), policy="all", aggregation="majority")
        by_id = coe.answer(
            Query(id=item.id, text=item.text, options=item.options), policy="all", aggregation="majority"
        )
    book = replay_book(replay_path(data_dir))
    assert by_text.choice == vote == by_id.choice
    assert {e.expert: e.text for e in by_text.trace.experts} == {
        e: book.get(m, item.id).text for e, m in models.items()
    }


@pytest.mark.data
def test_chat_completions_answer_a_question_text_on_the_replay_pool(data_dir, tmp_path):
    """The OpenAI-compatible route on replay-small (its recorded experts; its aggregator, a live
    model, stood in for by a fake): an MMLU-Pro question's text is answered from the recordings of
    its item; a text no item has is a 404 ``replay_miss``."""
    core = load_settings(pool=shipped_pool("replay-small"), data_dir=data_dir, runs_dir=tmp_path / "runs")

    def engines(spec, cpus=None):
        return make_engine(spec, cache_dir=tmp_path) if spec.source.kind == "replay" else FakeEngine(spec)

    item = load_benchmark("mmlu_pro").questions(data_dir, "test")[70]
    service = Service(ServiceSettings(core=core), Orchestrator(core, engine_factory=engines))
    with serving(create_app(service=service)) as url, httpx.Client(base_url=url, timeout=120) as http:
        asked = {"model": "replay-small/topk", "messages": [{"role": "user", "content": item.text}]}
        reply = http.post("/v1/chat/completions", json=asked)
        assert reply.status_code == 200, reply.text
        experts = reply.json()["trace"]["experts"]
        book = replay_book(replay_path(data_dir))
        models = recorded_models(service.coe.pool)
        assert experts and all(e["text"] == book.get(models[e["expert"]], item.id).text for e in experts)
        unknown = {**asked, "messages": [{"role": "user", "content": "What did nobody record an answer to?"}]}
        missed = http.post("/v1/chat/completions", json=unknown)
        assert missed.status_code == 404 and missed.json()["error"]["type"] == "replay_miss", missed.text


@pytest.mark.data
def test_questions_of_another_benchmark_are_replay_misses(data_dir, tmp_path):
    """AIME's ids are MMLU-Pro ids too: the recordings of MMLU-Pro answer none of them."""
    core = load_settings(pool=shipped_pool("replay-small"), data_dir=data_dir, runs_dir=tmp_path / "runs")
    aime = load_benchmark("aime")
    recorded = replay_book(replay_path(data_dir)).records("Yi-6b-Chat")
    items = [q for q in aime.questions(data_dir) if q.id in recorded][:5]  # AIME ids that MMLU-Pro has too
    assert len(items) == 5
    with Orchestrator(core) as coe:
        answers = coe.answer_batch(items, benchmark=aime, policy="topk", k=2, aggregation="majority")
    assert all(a.error and isinstance(a.failure(), ReplayMiss) for a in answers)
