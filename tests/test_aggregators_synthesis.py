"""LLM synthesis: the prompt (stripped, bounded, ordered), the Compose callback, the result."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregators import (
    ExpertAnswer,
    SynthesisJob,
    SynthesisOptions,
    bound_text,
    compose,
    order_answers,
    synthesis_outcome,
    synthesis_request,
    synthesis_result,
)
from batching import ExpertSpec, FakeEngine
from common.errors import BadInput, GenerationFailed
from common.requests import Generation, Request
from common.tasks import Task
from eval.extract import letter_extractor, strip_thinking

FORMAT = 'End with "The answer is (X)".'
QUESTION = "Which planet is largest?\n(A) Mars (B) Jupiter (C) Venus"


def answer(name: str, text: str, competence: float | None = None) -> ExpertAnswer:
    return ExpertAnswer(expert=name, text=text, competence=competence)


def test_think_blocks_are_stripped_and_question_and_format_present():
    request = synthesis_request(
        "agg-1",
        QUESTION,
        [
            answer("a", "<think>secret musing</think>Jupiter is biggest. The answer is (B)."),
            answer("b", "The answer is (A)."),
        ],
        FORMAT,
        SynthesisOptions(order="given"),
    )
    prompt = request.text
    assert "secret musing" not in prompt and "<think>" not in prompt
    assert "Jupiter is biggest. The answer is (B)." in prompt
    assert QUESTION in prompt and FORMAT in prompt
    assert prompt.index("Answer 1:") < prompt.index("(B).") < prompt.index("Answer 2:")
    assert request.id == "agg-1"


def test_expert_names_are_not_shown():
    request = synthesis_request("t", QUESTION, [answer("secret-expert-name", "The answer is (B).")], FORMAT)
    assert "secret-expert-name" not in request.text


def test_bound_keeps_the_end_in_chars_and_tokens():
    long = "start " + "x" * 5000 + " The answer is (C)."
    cut = bound_text(long, 200)
    assert len(cut) <= 200 and cut.endswith("The answer is (C).") and "start" not in cut
    assert bound_text("short", 200) == "short"

    by_chars = SynthesisOptions(answer_limit=100, limit_unit="chars")
    by_tokens = SynthesisOptions(answer_limit=100, limit_unit="tokens")
    chars = synthesis_request("t", QUESTION, [answer("a", long)], FORMAT, by_chars)
    tokens = synthesis_request("t", QUESTION, [answer("a", long)], FORMAT, by_tokens)
    assert "The answer is (C)." in chars.text and "start x" not in chars.text
    assert len(tokens.text) - len(chars.text) == pytest.approx(300, abs=2)  # 100 tokens ~ 400 chars


def _shown_order(prompt: str, names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: prompt.index(f"from {n}."))


def test_order_modes():
    group = [answer(n, f"Reply from {n}.", c) for n, c in (("a", 0.2), ("b", 0.9), ("c", None), ("d", 0.5))]
    names = [a.expert for a in group]

    def shown(options: SynthesisOptions, task_id: str = "t") -> list[str]:
        return _shown_order(synthesis_request(task_id, QUESTION, group, FORMAT, options).text, names)

    assert shown(SynthesisOptions(order="given")) == ["a", "b", "c", "d"]
    assert shown(SynthesisOptions(order="competence")) == ["b", "d", "a", "c"]
    # random: seeded, so the same seed and task give the same order...
    assert shown(SynthesisOptions(order="random", seed=3)) == shown(SynthesisOptions(order="random", seed=3))
    # ...and across tasks/seeds the order really varies
    orders = {tuple(shown(SynthesisOptions(order="random", seed=s), f"t{s}")) for s in range(20)}
    assert len(orders) > 5
    with pytest.raises(BadInput, match="order must be"):
        order_answers(group, "best")


def test_request_input_errors():
    with pytest.raises(BadInput, match="question_text is empty"):
        synthesis_request("t", "  ", [answer("a", "x")], FORMAT)
    with pytest.raises(BadInput, match="no expert answer"):
        synthesis_request("t", QUESTION, [answer("a", "<think>only thoughts</think>")], FORMAT)
    with pytest.raises(BadInput, match="answer_format is empty"):
        synthesis_request("t", QUESTION, [answer("a", "x")], "")


def _gen(task_id: str, model: str, text: str = "", error: str | None = None) -> Generation:
    return Generation(request_id=task_id, model=model, text=text, error=error, tokens_in=10, tokens_out=5)


def test_compose_leaves_out_failed_missing_and_empty_inputs():
    extract = letter_extractor(3)
    composer = compose(
        {"agg": SynthesisJob(QUESTION, FORMAT, competence={"e1": 0.9, "e2": 0.4})},
        SynthesisOptions(order="competence"),
    )
    task = Task(id="agg", model="aggregator", after=("q/e1", "q/e2", "q/e3", "q/e4", "q/e5"))
    inputs = {
        "q/e1": _gen("q/e1", "e1", "Clearly Jupiter. The answer is (B)."),
        "q/e2": _gen("q/e2", "e2", "Mars it is. The answer is (A)."),
        "q/e3": _gen("q/e3", "e3", error="timed out after 60 s"),
        "q/e4": _gen("q/e4", "e4", "<think>hmm</think>"),
    }
    composed = composer(task, inputs)
    request = composed.request
    assert isinstance(request, Request)
    assert "Clearly Jupiter" in request.text and "Mars it is" in request.text
    assert request.text.index("Clearly Jupiter") < request.text.index("Mars it is")  # by competence
    assert composed.used == ("q/e1", "q/e2")
    answers = {tid: ExpertAnswer.from_generation(g, extract) for tid, g in inputs.items()}
    assert [answers[t].choice for t in composed.used] == ["B", "A"]
    assert composed.left_out == (
        ("q/e3", "timed out after 60 s"),
        ("q/e4", "empty answer"),
        ("q/e5", "no generation arrived"),
    )

    # run the composed request on a fake aggregator and read the result
    engine = FakeEngine(
        ExpertSpec(name="aggregator", source={"kind": "vllm", "model": "m"}),
        answer=lambda spec, req: "Weighing both, The answer is (B).",
    )
    engine.load()
    (generation,) = engine.generate([request])
    result = synthesis_outcome(composed, generation, answers, extract)
    assert result.choice == "B" and result.method == "synthesis:aggregator"
    assert result.prompt == request.text
    assert result.left_out == ("e3: timed out after 60 s", "e4: empty answer", "q/e5: no generation arrived")
    assert result.agreed_with == ("e1",) and result.confidence == pytest.approx(0.5)
    assert result.inputs == ("e1", "e2") and len(result.left_out) == 3
    assert result.tokens_out == generation.tokens_out > 0


def test_compose_with_no_usable_input_fails_clearly():
    composer = compose({"agg": SynthesisJob(QUESTION, FORMAT)})
    task = Task(id="agg", model="aggregator", after=("x", "y"))
    with pytest.raises(GenerationFailed, match="none of its 2 expert answers arrived"):
        composer(task, {"x": _gen("x", "e1", error="boom")})
    with pytest.raises(BadInput, match="no synthesis job"):
        composer(Task(id="other", model="aggregator", after=("x",)), {})


def test_synthesis_result_of_failed_aggregator_raises():
    with pytest.raises(GenerationFailed, match="agg"):
        synthesis_result(_gen("agg", "aggr", error="out of memory"), [answer("a", "x")], letter_extractor(4))


def test_synthesis_result_unreadable_answer_has_no_choice():
    generation = _gen("agg", "aggr", "I cannot decide.")
    result = synthesis_result(generation, [answer("a", "The answer is (A)")], letter_extractor(4))
    assert result.choice is None and result.confidence == 0.0 and result.agreed_with == ()


def test_compose_is_pure_the_same_inputs_give_the_same_record():
    composer = compose({"agg": SynthesisJob(QUESTION, FORMAT)}, SynthesisOptions(order="random", seed=3))
    task = Task(id="agg", model="aggregator", after=("x", "y"))
    inputs = {"x": _gen("x", "e1", "The answer is (B)."), "y": _gen("y", "e2", "The answer is (C).")}
    first = composer(task, inputs)
    assert composer(task, dict(reversed(inputs.items()))) == first
    assert first.used == ("x", "y") and first.left_out == ()


@given(st.text(min_size=0, max_size=3000), st.integers(min_value=8, max_value=2000))
def test_bound_text_never_exceeds_and_keeps_the_end(text, limit):
    cut = bound_text(text, limit)
    plain = strip_thinking(text)
    if len(plain) <= limit:
        assert cut == plain
    else:
        assert len(cut) <= limit and cut.startswith("[...]")
        tail = cut[len("[...] ") :]
        assert plain.endswith(tail)
