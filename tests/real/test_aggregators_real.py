"""Real tier: the synthesis prompt and the aggregator selection on SmolLM2 served by vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregators import (
    ExpertAnswer,
    SynthesisOptions,
    ValidationItem,
    records_for,
    select_aggregator,
    synthesis_request,
    synthesis_result,
)
from batching import ExpertSpec, make_engine
from common.recordings import ReplayBook
from common.requests import Generation
from common.tasks import Task
from eval.extract import letter_extractor
from orchestrator.pools.artefacts import PoolArtefacts

pytestmark = pytest.mark.real

FORMAT = 'End with the line "The answer is (X)", X being the letter of the chosen option.'
QUESTION = "What is 2 + 3?\n\nOptions:\n(A) 4\n(B) 5\n(C) 6\n(D) 7"


@pytest.fixture(scope="module")
def smollm2(cache_dir: Path):
    spec = ExpertSpec(
        name="smollm2",
        source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct", "max_model_len": 2048},
        sampling={"max_tokens": 96, "temperature": 0.0},
    )
    engine = make_engine(spec, cache_dir=cache_dir)
    engine.load()
    yield engine
    engine.unload()


def test_synthesis_runs_on_a_real_aggregator(smollm2):
    answers = [
        ExpertAnswer(expert="e1", text="<think>2+3...</think>Adding gives 5. The answer is (B).", choice="B"),
        ExpertAnswer(expert="e2", text="I think it is 4. The answer is (A).", choice="A"),
    ]
    request = synthesis_request("agg-real", QUESTION, answers, FORMAT, SynthesisOptions(seed=1))
    (generation,) = smollm2.generate([request])
    assert generation.ok and generation.text.strip()
    assert generation.tokens_in >= len(request.text) // 8  # the whole prompt went in
    assert 0 < generation.tokens_out <= 96
    result = synthesis_result(generation, answers, letter_extractor(4))
    assert result.method == "synthesis:smollm2"
    assert result.choice in (None, "A", "B", "C", "D")
    assert result.confidence in (0.0, 0.5)  # it agrees with one of the two experts or neither


def test_selection_through_a_real_engine(smollm2, tmp_path: Path):
    lines = []
    golds = {"r1": "B", "r2": "C", "r3": "A"}
    for qid, gold in golds.items():
        for model, pred in (("M1", gold), ("M2", "D"), ("M3", "A" if gold != "A" else "B")):
            text = f"Working it through. The answer is ({pred})."
            lines.append(
                json.dumps(
                    {"model": model, "question_id": qid, "text": text, "pred": pred, "correct": int(pred == gold)}
                )
            )
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(lines) + "\n")
    items = [
        ValidationItem(
            qid,
            f"Pick option {gold}.\n\nOptions:\n(A) a\n(B) b\n(C) c\n(D) d",
            gold,
            "demo",
            FORMAT,
            letter_extractor(4),
        )
        for qid, gold in golds.items()
    ]

    def run(tasks: list[Task]) -> dict[str, Generation]:
        assert {t.model for t in tasks} == {"smollm2"}
        return {t.id: g for t, g in zip(tasks, smollm2.generate([t.request for t in tasks]), strict=True)}

    records = records_for(ReplayBook(replay), {"m1": "M1", "m2": "M2", "m3": "M3"})
    choice = select_aggregator(["smollm2"], items, records, run)
    score = choice.candidates["smollm2"]
    assert score.n == 3 and score.failed == 0 and 0 <= score.correct <= 3
    PoolArtefacts(tmp_path / "pool").save_choice(choice)
    assert PoolArtefacts(tmp_path / "pool").latest_choice().best == "smollm2"
