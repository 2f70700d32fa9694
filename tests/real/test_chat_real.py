"""Conversations for real: the token estimate against the default models' own tokenizers and chat
templates, and a long conversation answered by SmolLM2 and Gemma on vLLM with a context too small
for it, which only the cut of its oldest turns lets through (vLLM refuses a prompt over its
``max_model_len``)."""

from __future__ import annotations

import gzip
import json

import pytest

from batching.models import resolve_model
from common.conversation import PER_MESSAGE, estimate_tokens, message_tokens
from common.requests import Message
from orchestrator import Orchestrator, load_pool, load_settings
from orchestrator.pools.settings import shipped_pool

MODELS = ("packaged:smollm2-135m-instruct", "packaged:gemma3-270m")


def texts(data_dir, n: int = 600) -> list[str]:
    """MMLU-Pro questions with their options, and recorded answers (chains of thought)."""
    with gzip.open(data_dir / "benchmarks" / "mmlu_pro" / "test.jsonl.gz", "rt") as rows:
        questions = [json.loads(line) for _, line in zip(range(n), rows, strict=False)]
    with gzip.open(data_dir / "replay" / "mmlu_pro_replay.jsonl.gz", "rt") as rows:
        answers = [json.loads(line)["text"] for _, line in zip(range(n), rows, strict=False)]
    return [q["question"] + "\n" + "\n".join(q["options"]) for q in questions] + [a for a in answers if a]


@pytest.mark.data
@pytest.mark.parametrize("model", MODELS)
def test_the_estimate_is_at_least_the_tokenizers_count_for_99_percent_of_texts(cache_dir, data_dir, model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model, cache_dir))
    given = texts(data_dir)
    real = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in given]
    under = [t for t, n in zip(given, real, strict=True) if n > estimate_tokens(t)]
    assert len(under) <= 0.01 * len(given), f"{len(under)} of {len(given)} texts counted short"
    assert sum(real) <= sum(estimate_tokens(t) for t in given)  # and short of it overall
    if tokenizer.chat_template is None:
        return
    conversations = [given[i : i + 5] for i in range(0, 200, 5)]  # user and assistant taking turns
    for turns in conversations:
        messages = [Message(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(turns)]
        templated = tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=True)
        ids = templated["input_ids"] if isinstance(templated, dict) else templated
        assert len(ids) <= message_tokens(messages) + PER_MESSAGE, "a template added more than its allowance"


@pytest.mark.data
def test_a_conversation_longer_than_the_context_is_answered_by_real_models(cache_dir, data_dir, tmp_path):
    """max_model_len 768 for both models: the conversation is about 3,000 tokens long."""
    pool = load_pool(shipped_pool("default"), data_dir)
    models = tuple(
        spec.model_copy(update={"source": spec.source.model_copy(update={"max_model_len": 768})})
        for spec in pool.models
    )
    pool = pool.model_copy(update={"models": models})
    messages = [{"role": "system", "content": "You are a patient science teacher."}]
    for question in texts(data_dir, 12)[:12]:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": "Let me think about it; I will come back to it."})
    messages.append({"role": "user", "content": "Which planet is the largest in the solar system?"})
    settings = load_settings(
        pool=shipped_pool("default"), runs_dir=tmp_path / "runs", cache_dir=cache_dir, policy="all", cache="off"
    )
    with Orchestrator(settings, pool=pool) as coe:
        answer = coe.chat(messages, skip_consensus=False)
    record = answer.trace.conversation
    assert record is not None and record.messages == len(messages)
    assert set(record.cut) == {"smollm2", "gemma3"} and all(n > 0 for n in record.cut.values())
    assert record.aggregator_cut > 0
    assert all(e.error is None for e in answer.trace.experts), [e.error for e in answer.trace.experts]
    assert answer.trace.aggregation is not None and answer.trace.aggregation.method.startswith("synthesis")
    assert answer.text.strip()
