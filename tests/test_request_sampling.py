"""A request may override its expert's sampling (distinct annotation samples of one prompt)."""

from __future__ import annotations

import json

import httpx

from batching import ExpertSpec
from batching.engines.http import HTTPEngine
from common.requests import Request, Sampling
from eval.benchmarks import Question
from skills import annotation_tasks


def test_overrides_apply_only_where_given():
    base = Sampling(max_tokens=100, temperature=0.0, seed=0, stop=("x",))
    assert Request.user("a", "q").sampling(base) is base
    changed = Request.user("a", "q", temperature=0.7, seed=3).sampling(base)
    assert (changed.temperature, changed.seed, changed.max_tokens, changed.stop) == (0.7, 3, 100, ("x",))


def test_http_body_carries_the_override():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        )

    spec = ExpertSpec(name="e", source={"kind": "http", "base_url": "http://h/v1", "model": "m"})
    engine = HTTPEngine(spec, transport=httpx.MockTransport(handler))
    engine.load()
    engine.generate([Request.user("a", "q", temperature=0.9, seed=7)])
    engine.unload()
    assert bodies[0]["temperature"] == 0.9 and bodies[0]["seed"] == 7


def test_annotation_samples_differ_by_seed():
    q = Question(id="1", benchmark="mmlu_pro", text="What is 2+2?", answer="A", options=("4", "5"))
    tasks = annotation_tasks([q], "smollm2", samples=3)
    assert [t.request.seed for t in tasks] == [0, 1, 2]
    assert all(t.request.temperature == 0.7 for t in tasks)


def test_http_transport_errors_are_one_line_errors():
    import pytest

    from common.errors import EndpointError

    def slow_models(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    spec = ExpertSpec(name="e", source={"kind": "http", "base_url": "http://h/v1", "model": "m", "retries": 0})
    with pytest.raises(EndpointError, match="cannot reach http://h/v1/models"):
        HTTPEngine(spec, transport=httpx.MockTransport(slow_models)).load()

    def broken_write(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        raise httpx.WriteError("connection dropped", request=request)

    engine = HTTPEngine(spec, transport=httpx.MockTransport(broken_write))
    engine.load()
    out = engine.generate([Request.user("a", "q"), Request.user("b", "q")])
    engine.unload()
    assert all(g.error and "WriteError" in g.error for g in out)
