"""VLLMEngine log-probabilities on real vLLM and the packaged SmolLM2: a request that asks gets the
finite negative mean of its sampled tokens' log-probabilities, streamed or not; one that does not
gets None; asking changes no text."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from batching.engines.vllm_engine import VLLMEngine
from common.requests import Request, Sampling

from .test_vllm_engine import smollm2

log = logging.getLogger(__name__)


def test_a_greedy_answer_comes_with_its_mean_logprob_when_asked(cache_dir: Path) -> None:
    spec = smollm2().model_copy(update={"sampling": Sampling(max_tokens=16)})
    engine = VLLMEngine(spec, cache_dir=cache_dir)
    question = "What is the capital of France?"
    requests = [
        Request.user("asked", question, logprobs=True),
        Request.user("plain", question),
        Request.user("other", "Name three colours of the rainbow.", logprobs=True),
    ]
    engine.load()
    try:
        plain = engine.generate(requests)
        streamed = engine.generate(requests, on_delta=lambda i, text: None)
    finally:
        engine.unload()
    for generations in (plain, streamed):
        asked, not_asked, other = generations
        assert asked.ok and not_asked.ok and other.ok and asked.tokens_out > 0
        assert not_asked.logprob is None
        for generation in (asked, other):
            assert generation.logprob is not None and math.isfinite(generation.logprob)
            assert -10.0 < generation.logprob < 0.0
        assert asked.text == not_asked.text  # greedy: asking for logprobs changes no token
    assert [g.logprob for g in streamed] == pytest.approx([g.logprob for g in plain], abs=1e-3)
    log.info("mean logprobs: %s", [(g.request_id, g.tokens_out, g.logprob) for g in plain])
