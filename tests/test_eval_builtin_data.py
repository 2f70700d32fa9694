"""The built-in benchmarks on the shared data: counts and shapes per split, the 5-shot prompt,
the Symbolic-MoE splits. GPQA items are only counted and measured, never shown."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from eval import BENCHMARKS, AnswerKind, get_benchmark
from eval.question import LETTERS

COUNTS = [
    ("mmlu_pro", "test", 12032),
    ("mmlu_pro", "validation", 70),
    ("mmlu_pro", "symbolic_train", 350),
    ("mmlu_pro", "symbolic_test", 2100),
    ("mmlu_pro_5shot", "test", 12032),
    ("mmlu_pro_5shot", "symbolic_test", 2100),
    ("gpqa", "diamond", 198),
    ("gpqa", "main", 448),
    ("gpqa", "extended", 546),
    ("gpqa", "symbolic_train", 249),
    ("gpqa", "symbolic_test", 198),
    ("aime", "aime24", 30),
    ("aime", "aime25", 30),
    ("aime", "symbolic_train", 354),
    ("aime", "symbolic_test", 30),
    ("medmcqa", "dev", 4183),
    ("medmcqa", "symbolic_train", 504),
    ("medmcqa", "symbolic_test", 4183),
]


def test_every_split_is_counted_here():
    assert {(name, split) for name, bench in BENCHMARKS.items() for split in bench.splits} - {
        (n, s) for n, s, _ in COUNTS
    } == {("mmlu_pro_5shot", "symbolic_train")}


@pytest.mark.data
@pytest.mark.parametrize(("name", "split", "count"), COUNTS)
def test_split_counts_and_shapes(data_dir, name, split, count):
    bench = get_benchmark(name)
    items = bench.questions(data_dir, split)
    assert len(items) == count
    assert len({q.id for q in items}) == count
    assert all(q.text.strip() and q.benchmark == name for q in items)
    if bench.answer_kind is AnswerKind.LETTER:
        assert all(2 <= len(q.options) <= 10 for q in items)
        assert all(q.answer in LETTERS[: len(q.options)] for q in items)
        assert all(bench.score(q, f"The answer is ({q.answer}).") for q in items)
    else:
        assert all(not q.options and q.answer.replace(" or ", "").isdigit() for q in items)
        assert all(bench.score(q, f"\\boxed{{{q.answer.split(' or ')[0]}}}") for q in items)


@pytest.mark.data
def test_five_shot_prompt_shows_five_examples_of_the_category(data_dir):
    bench = get_benchmark("mmlu_pro_5shot")
    validation = get_benchmark("mmlu_pro").questions(data_dir, "validation")
    items = bench.questions(data_dir)
    assert len({id(q.preamble) for q in items}) == 14  # one shared string per category
    for question in {q.category: q for q in items}.values():
        prompt = bench.prompt(question)
        assert prompt.count("\nAnswer: Let's think step by step.") == 5
        assert prompt.count("Question: ") == 6
        shown = [v for v in validation if v.text.strip() in prompt]
        assert len(shown) == 5 and {v.category for v in shown} == {question.category}
        assert prompt.rstrip().endswith(f"one of {', '.join(LETTERS[: len(question.options)])}.")
        assert not re.search(r"^\([A-J]\) N/A$", prompt, re.MULTILINE)  # the placeholder options are dropped


@pytest.mark.data
def test_symbolic_splits_take_the_original_items(data_dir):
    def ids(name: str, split: str) -> set[str]:
        return {q.id for q in get_benchmark(name).questions(data_dir, split)}

    mmlu = ids("mmlu_pro", "test")
    assert len(ids("mmlu_pro", "symbolic_train") & mmlu) == 350
    assert len(ids("mmlu_pro", "symbolic_test") & mmlu) == 2099  # one item is not in this revision
    assert ids("medmcqa", "symbolic_test") == ids("medmcqa", "dev")
    assert len(ids("aime", "symbolic_test") & ids("aime", "aime24")) == 22
    gpqa = ids("gpqa", "extended") | ids("gpqa", "main") | ids("gpqa", "diamond")
    assert len(ids("gpqa", "symbolic_test") & gpqa) == 86
    for name in ("mmlu_pro", "gpqa", "aime", "medmcqa"):
        train, test = ids(name, "symbolic_train"), ids(name, "symbolic_test")
        assert not train & test
        assert ids(name, "symbolic_test") == test  # stable from one load to the next


@pytest.mark.data
def test_symbolic_items_without_a_match_keep_their_options_and_categories(data_dir):
    items = get_benchmark("medmcqa").questions(data_dir, "symbolic_train")
    assert all(q.id.startswith("q-") and len(q.options) == 4 for q in items)
    assert Counter(q.answer for q in items).keys() <= set("ABCD")
    mmlu = get_benchmark("mmlu_pro").questions(data_dir, "symbolic_test")
    assert Counter(q.category is not None for q in mmlu) == {True: 2100}
