"""Benchmark loaders read the shared files in place; extractors fall back instead of raising."""

from __future__ import annotations

import pytest

from common.errors import NotFound
from eval import BENCHMARKS, get_benchmark, integer_extractor, letter_extractor, strip_thinking


@pytest.mark.parametrize(
    ("n", "text", "expected"),
    [
        (10, "Step 1... The answer is (C).", "C"),
        (10, "the answer is: **D**", "D"),
        (10, "Answer: B", "B"),
        (10, "I pick (A) over (B)", "B"),
        (10, "<think>The answer is (A)</think> The answer is (E).", "E"),
        (10, "no letter here", None),
        (10, "", None),
        (4, "The answer is (J).", None),  # J is not among A-D
        (10, "The answer is (J).", "J"),
    ],
)
def test_letter_extractor(n, text, expected):
    assert letter_extractor(n)(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("so \\boxed{025}", "25"), ("The answer is 204.", "204"), ("x = 5, so 1,000 or 7", "7"), ("nothing", None)],
)
def test_integer_extractor(text, expected):
    assert integer_extractor()(text) == expected


def test_strip_thinking():
    assert strip_thinking("<think>a\nb</think>\nfinal") == "final"
    assert strip_thinking("half </think> rest") == "rest"


def test_unknown_benchmark_suggests():
    with pytest.raises(NotFound, match="did you mean 'mmlu_pro'"):
        get_benchmark("mmlu-pro")


@pytest.mark.data
@pytest.mark.parametrize(("name", "count"), [("mmlu_pro", 12032), ("gpqa", 198), ("medmcqa", 4183), ("aime", 30)])
def test_loaders_read_shared_data(data_dir, name, count):
    bench = BENCHMARKS[name]
    questions = bench.questions(data_dir)
    assert len(questions) == count
    assert len({q.id for q in questions}) == count
    q = questions[0]
    prompt = bench.prompt(q)
    assert q.text.strip()[:40] in prompt
    if q.options:
        assert q.answer in "ABCDEFGHIJ"[: len(q.options)]
        assert bench.extract(q, f"The answer is ({q.answer}).") == q.answer
    else:
        assert bench.extract(q, f"\\boxed{{{q.answer}}}") == q.answer


@pytest.mark.data
def test_gpqa_shuffle_is_stable(data_dir):
    first = [q.answer for q in BENCHMARKS["gpqa"].questions(data_dir)]
    again = [q.answer for q in BENCHMARKS["gpqa"].questions(data_dir)]
    assert first == again and len(set(first)) == 4


def test_unknown_split_is_named(tmp_path):
    with pytest.raises(
        NotFound, match="unknown mmlu_pro split 'train'; .*splits: test, validation, symbolic_train, symbolic_test"
    ):
        get_benchmark("mmlu_pro").questions(tmp_path, "train")
