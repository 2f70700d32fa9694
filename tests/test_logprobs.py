"""Token log-probabilities: ``Request.logprobs`` asks, ``Generation.logprob`` carries the mean.

The fake gives a stable value from the text; HTTPEngine asks the server and averages what the
replies of tests/data/logprob_replies.toml carry (plain and streamed); the vLLM worker averages
its completion's per-token values; a generation made without them never answers a request that
asks (the request key includes the flag). vLLM itself is in tests/real/test_vllm_logprobs.py.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from pydantic import ValidationError

from batching import ExpertSpec, FakeEngine
from batching.engines._vllm_worker import _mean_logprob
from batching.engines.base import mean_logprob
from batching.engines.fake import fake_logprob
from batching.engines.http import HTTPEngine
from batching.executor import Executor
from batching.plan import make_plan
from batching.runstore import SQLiteRunStore, request_key
from common.requests import Generation, Request
from common.tasks import Task
from tests.test_cache import DictCache, run
from tests.test_executor import SPECS, Factory, compose

REPLIES = tomllib.loads((Path(__file__).parent / "data" / "logprob_replies.toml").read_text(encoding="utf-8"))["case"]


# -- the records ------------------------------------------------------------------------------------


def test_both_fields_are_optional_so_stored_records_still_validate() -> None:
    old = Generation.model_validate_json('{"request_id": "r", "model": "m", "text": "4", "finish_reason": "stop"}')
    assert old.logprob is None
    assert Request.model_validate({"id": "r", "messages": [{"role": "user", "content": "q"}]}).logprobs is False
    assert Generation(request_id="r", model="m", logprob=-0.25).logprob == -0.25


def test_a_positive_mean_logprob_is_refused() -> None:
    with pytest.raises(ValidationError, match="logprob"):
        Generation(request_id="r", model="m", logprob=0.5)


@pytest.mark.parametrize(
    ("values", "mean"),
    [
        ([-1.0, -0.5, 0.0], -0.5),
        ([-2], -2.0),
        ([], None),
        ([-1.0, None], None),
        ([-1.0, float("nan")], None),
        ([-1.0, float("-inf")], None),
        ([True], None),
        ([1e-9, -1e-9, 2e-9], 0.0),
    ],
)
def test_mean_logprob(values: list, mean: float | None) -> None:
    assert mean_logprob(values) == (None if mean is None else pytest.approx(mean))


# -- the fake -----------------------------------------------------------------------------------------


def test_the_fake_gives_a_stable_plausible_logprob_only_when_asked() -> None:
    engine = FakeEngine(ExpertSpec(name="a", source={"kind": "vllm", "model": "m"}))
    engine.load()
    asked = [Request.user(f"r{i}", f"question {i}?", logprobs=True) for i in range(8)]
    plain = [Request.user("p", "question 0?")]
    generations = engine.generate(asked + plain)
    values = [g.logprob for g in generations[:-1]]
    assert generations[-1].logprob is None
    assert all(v is not None and -2.0 <= v <= -0.05 for v in values)
    assert values == [fake_logprob(g.text) for g in generations[:-1]]
    assert engine.generate(asked)[0].logprob == values[0]  # the same text, the same value
    assert fake_logprob("The answer is (A).") != fake_logprob("The answer is (B).")


# -- the HTTP engine ----------------------------------------------------------------------------------


def _serve(case: dict, bodies: list[dict]) -> HTTPEngine:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "smol"}]})
        bodies.append(json.loads(request.content))
        if case["stream"]:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=case["body"].encode())
        return httpx.Response(200, json=json.loads(case["body"]))

    spec = ExpertSpec(
        name="remote",
        source={"kind": "http", "base_url": "http://llm.test/v1", "model": "smol"},
        prompt_mode=case["mode"],
    )
    engine = HTTPEngine(spec, transport=httpx.MockTransport(handler))
    engine.load()
    return engine


@pytest.mark.parametrize("case", REPLIES, ids=[c["name"] for c in REPLIES])
def test_http_replies(case: dict) -> None:
    bodies: list[dict] = []
    engine = _serve(case, bodies)
    on_delta = (lambda i, t: None) if case["stream"] else None
    [asked, plain] = [
        engine.generate([Request.user("r", "What is 2 + 2?", logprobs=flag)], on_delta=on_delta)[0]
        for flag in (True, False)
    ]
    assert asked.ok and plain.ok and asked.text == plain.text
    assert bodies[0]["logprobs"] == (True if case["mode"] == "chat" else 0) and "logprobs" not in bodies[1]
    assert isinstance(bodies[0]["logprobs"], bool) == (case["mode"] == "chat")
    assert plain.logprob is None
    if "logprob" in case:
        assert asked.logprob is not None and math.isclose(asked.logprob, case["logprob"], abs_tol=1e-9)
    else:
        assert asked.logprob is None


# -- the vLLM worker's mean -------------------------------------------------------------------------


def _completion(token_ids: list[int], steps: list[dict] | None, cumulative: float | None) -> SimpleNamespace:
    logprobs = None if steps is None else [{t: SimpleNamespace(logprob=v) for t, v in s.items()} for s in steps]
    return SimpleNamespace(token_ids=token_ids, logprobs=logprobs, cumulative_logprob=cumulative)


def test_the_worker_averages_the_sampled_tokens_logprobs() -> None:
    # a step may also hold other tokens (top alternatives): only the sampled one counts
    done = _completion([5, 7], [{5: -0.5, 9: -0.1}, {7: -1.5}], cumulative=-2.0)
    assert _mean_logprob(done, asked=True) == pytest.approx(-1.0)
    assert _mean_logprob(done, asked=False) is None
    assert _mean_logprob(_completion([5, 7], None, cumulative=-3.0), asked=True) == pytest.approx(-1.5)
    assert _mean_logprob(_completion([5], [{6: -0.2}], cumulative=-0.2), asked=True) is None  # no sampled entry
    assert _mean_logprob(_completion([], [], cumulative=0.0), asked=True) is None  # no tokens at all


# -- caches and run stores ------------------------------------------------------------------------


def test_the_flag_is_part_of_the_request_key_only_when_set() -> None:
    spec = SPECS["a"]
    plain, asked = Request.user("r", "q?"), Request.user("r", "q?", logprobs=True)
    assert request_key(spec, asked) != request_key(spec, plain)
    # the key of a request that does not ask is what it was before the flag existed: caches stay valid
    assert request_key(spec, plain) == "6d2bc1ed40bc1dfb87c25ecbcbe03bed4115be960373507b6d59859bc833d382"


def _tasks(logprobs: bool) -> list[Task]:
    return [
        Task(id=f"t{i}", model="a", request=Request.user(f"t{i}", f"question {i}?", logprobs=logprobs))
        for i in range(3)
    ]


def test_a_cached_generation_without_logprobs_does_not_answer_a_request_for_them() -> None:
    cache = DictCache()
    _, first = run(_tasks(False), cache)
    assert all(g.logprob is None for g in first.generations.values())
    factory, asked = run(_tasks(True), cache)
    assert factory.loads("a") == 1 and asked.metrics.cache_hits == 0
    assert all(g.logprob is not None for g in asked.generations.values())
    factory, again = run(_tasks(True), cache)  # now cached with their logprobs
    assert factory.made == {} and again.metrics.cache_hits == 3
    assert {t: g.logprob for t, g in again.generations.items()} == {t: g.logprob for t, g in asked.generations.items()}


def test_a_resumed_run_regenerates_what_was_stored_without_logprobs(tmp_path: Path) -> None:
    plan = make_plan(_tasks(False), SPECS, budget_mb=1000)
    with SQLiteRunStore(tmp_path / "runs.sqlite") as store:
        Executor(Factory(), store=store).run(plan, _tasks(False), SPECS, compose, run_id="r")
        factory = Factory()
        result = Executor(factory, store=store).run(
            make_plan(_tasks(True), SPECS, budget_mb=1000), _tasks(True), SPECS, compose, run_id="r"
        )
    assert factory.loads("a") == 1 and sorted(r for b in factory.batches("a") for r in b) == ["t0", "t1", "t2"]
    assert all(g.logprob is not None for g in result.generations.values())
