"""Benchmarks as data (loaders, prompts, extraction, metrics) and, later, runs and reports."""

from eval.benchmarks import BENCHMARKS, Benchmark, Question, choice_prompt, get_benchmark
from eval.data import replay_path
from eval.extract import final_line_extractor, integer_extractor, letter_extractor, strip_thinking
from eval.splits import PROFILE_SHARE, partition, sample, seeded_order, split

__all__ = [
    "PROFILE_SHARE",
    "partition",
    "BENCHMARKS",
    "Benchmark",
    "Question",
    "choice_prompt",
    "get_benchmark",
    "final_line_extractor",
    "integer_extractor",
    "letter_extractor",
    "replay_path",
    "sample",
    "seeded_order",
    "split",
    "strip_thinking",
]
