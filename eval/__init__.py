"""Benchmarks as data (loaders, prompts, answer kinds, spec files), splits and samples, run results."""

from eval.answers import AnswerKind, AnswerRule, math_equal, normalise_text
from eval.benchmarks import BENCHMARKS, Benchmark, Question, choice_prompt, get_benchmark, load_benchmark
from eval.data import replay_path
from eval.extract import (
    final_line_extractor,
    integer_extractor,
    last_boxed,
    letter_extractor,
    math_extractor,
    number_extractor,
    strip_thinking,
    text_extractor,
)
from eval.spec import load_spec
from eval.splits import PROFILE_SHARE, partition, sample, seeded_order, split, stratified_sample

__all__ = [
    "PROFILE_SHARE",
    "partition",
    "AnswerKind",
    "AnswerRule",
    "BENCHMARKS",
    "Benchmark",
    "Question",
    "choice_prompt",
    "get_benchmark",
    "load_benchmark",
    "load_spec",
    "final_line_extractor",
    "integer_extractor",
    "last_boxed",
    "letter_extractor",
    "math_equal",
    "math_extractor",
    "normalise_text",
    "number_extractor",
    "replay_path",
    "sample",
    "seeded_order",
    "split",
    "stratified_sample",
    "strip_thinking",
    "text_extractor",
]
