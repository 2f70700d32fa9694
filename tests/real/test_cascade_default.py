"""A cascade on the default pool for real: SmolLM2 (the cheaper model) answers first with its token
log-probabilities on vLLM, the router reads them into its confidence, and Gemma answers only
the questions it escalates; each model loaded at most once per round."""

from __future__ import annotations

import math
from pathlib import Path

from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT

QUESTIONS = [
    Question(
        id="plants",
        benchmark="free",
        text="Which gas do plants take from the air to make sugar?",
        options=("Oxygen", "Carbon dioxide", "Nitrogen"),
        answer="B",
    ),
    Question(id="sum", benchmark="free", text="What is 2 + 3?", options=("4", "5", "6", "7"), answer="B"),
    Question(
        id="capital", benchmark="free", text="What is the capital of France?", options=("Rome", "Paris"), answer="B"
    ),
]


def test_cascade_with_token_confidence_on_the_default_pool(cache_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(
        pool=PROJECT_ROOT / "pools" / "default", cache_dir=cache_dir, runs_dir=tmp_path / "runs", cache="off"
    )
    coe = Orchestrator(settings)
    answers = coe.answer_batch(QUESTIONS, policy="cascade", aggregation="majority")
    assert len(answers) == len(QUESTIONS)
    for answer in answers:
        trace = answer.trace
        first = trace.experts[0]
        assert first.expert == "smollm2" and first.error is None
        assert first.logprob is not None and math.isfinite(first.logprob) and first.logprob <= 0.0
        assert trace.escalations and 0.0 < trace.escalations[0].confidence < 1.0
        climbed = trace.escalations[0].escalate
        assert [e.expert for e in trace.experts] == (["smollm2", "gemma3"] if climbed else ["smollm2"])
        assert trace.cost == sum({"smollm2": 0.135, "gemma3": 0.27}[e.expert] for e in trace.experts)
    escalated = sum(a.trace.escalations[0].escalate for a in answers)
    loads = answers[0].trace.loads
    assert loads == 1 + (1 if escalated else 0), (loads, escalated)
