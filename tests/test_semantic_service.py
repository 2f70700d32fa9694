"""The semantic cache in ``coe serve`` (fast tier: a real uvicorn server with fake engines and
the real encoder, called with the ``openai`` client): a paraphrase is answered from the cache
without an engine call, a changed number is not, a request refuses the cache with
Cache-Control, the trace and /metrics say what happened; off by default."""

from __future__ import annotations

import httpx
import openai
import pytest

from orchestrator.pools.settings import SemanticCacheSettings
from tests.live_server import serving
from tests.test_service import Engines, make_app

ASKED = "A farmer has 12 apples and sells 5 of them. How many apples does the farmer have left?"
PARAPHRASE = "A farmer has 12 apples and sells 5 of them. How many apples does he have left?"
CHANGED = "A farmer has 13 apples and sells 5 of them. How many apples does the farmer have left?"


def ask(client: openai.OpenAI, question: str, stream: bool = False, **extra):
    messages = [{"role": "user", "content": question}]
    return client.chat.completions.create(model="default", messages=messages, stream=stream, **extra)


def semantic(reply) -> dict | None:
    return reply.model_extra["trace"].get("semantic_cache")


def counter(metrics: str, line_start: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(line_start))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engines = Engines()
    on = SemanticCacheSettings(enabled=True)
    app = make_app(tmp_path_factory.mktemp("semantic"), engines, cache="off", semantic_cache=on)
    with serving(app) as url:
        yield url, engines, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_a_paraphrase_is_answered_from_the_cache_and_a_changed_number_is_not(server):
    url, engines, client = server
    first = ask(client, ASKED)
    assert semantic(first)["outcome"] == "miss"
    asked = len(engines.asked())
    again = ask(client, PARAPHRASE)
    note = semantic(again)
    assert note["outcome"] == "hit" and note["similarity"] >= note["threshold"] == 0.9
    assert again.choices[0].message.content == first.choices[0].message.content
    assert len(engines.asked()) == asked  # no engine was called
    assert again.usage.total_tokens == 0 and first.usage.total_tokens > 0
    changed = ask(client, CHANGED)
    assert semantic(changed)["outcome"] == "miss" and len(engines.asked()) > asked
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, PARAPHRASE, stream=True) if c.choices)
    assert streamed == first.choices[0].message.content


def test_a_request_refuses_the_cache_with_cache_control(server):
    url, engines, client = server
    question = "Which river flows through the city of Vienna?"
    refused = 'coe_semantic_cache_lookups_total{outcome="refused"}'
    before = counter(httpx.get(f"{url}/metrics").text, refused)
    ask(client, question)
    asked = len(engines.asked())
    fresh = ask(client, question + " ", extra_headers={"Cache-Control": "no-cache"})
    assert semantic(fresh)["outcome"] == "refused" and len(engines.asked()) > asked
    assert semantic(ask(client, question))["outcome"] == "hit"
    private = "Which river flows through the city of Budapest?"
    assert semantic(ask(client, private, extra_headers={"Cache-Control": "no-store"}))["outcome"] == "refused"
    assert semantic(ask(client, private))["outcome"] == "miss"  # no-store kept nothing
    assert counter(httpx.get(f"{url}/metrics").text, refused) == before + 2


def test_the_native_route_uses_the_cache_too_and_metrics_count_it(server):
    url, engines, _ = server
    body = {"question": "Pick the colour of a ripe banana.", "options": ["yellow", "blue"]}
    first = httpx.post(f"{url}/v1/answer", json=body, timeout=30).json()
    again = httpx.post(f"{url}/v1/answer", json={**body, "id": "mine"}, timeout=30).json()
    other = httpx.post(f"{url}/v1/answer", json={**body, "options": ["yellow", "red"]}, timeout=30).json()
    assert first["trace"]["semantic_cache"]["outcome"] == "miss"
    assert again["trace"]["semantic_cache"]["outcome"] == "hit" and again["question_id"] == "mine"
    assert other["trace"]["semantic_cache"]["outcome"] == "miss"  # other options: another question
    metrics = httpx.get(f"{url}/metrics").text
    hits = counter(metrics, 'coe_semantic_cache_lookups_total{outcome="hit"}')
    misses = counter(metrics, 'coe_semantic_cache_lookups_total{outcome="miss"}')
    assert hits >= 1 and misses >= 2
    assert counter(metrics, "coe_semantic_cache_hit_rate ") == pytest.approx(hits / (hits + misses))
    assert counter(metrics, "coe_semantic_cache_lookup_seconds_count") >= 3


def test_off_by_default(tmp_path):
    engines = Engines()
    with serving(make_app(tmp_path, engines, cache="off")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        ask(client, ASKED)
        asked = len(engines.asked())
        again = ask(client, ASKED)
    assert semantic(again) is None and len(engines.asked()) == 2 * asked
