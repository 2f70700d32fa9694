"""Benchmarks as data (loaders, prompts, answer kinds, spec files), splits and samples, run results."""

from eval.answers import AnswerKind, AnswerRule, math_equal, normalise_text
from eval.benchmarks import (
    BENCHMARKS,
    Benchmark,
    Question,
    choice_prompt,
    get_benchmark,
    item_benchmark,
    load_benchmark,
    named_benchmark,
    registered_benchmarks,
)
from eval.compare import Comparison, PairedScore, change, compare, compare_scored, render_comparison, run_label
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
from eval.plots import plot_cost, plot_frontier, plot_usage, write_plots
from eval.report import summarise, write_report
from eval.report_markdown import render_markdown, render_methods_table
from eval.spec import load_spec
from eval.splits import PROFILE_SHARE, partition, sample, seeded_order, split, stratified_sample
from eval.summary import MethodSummary, Summary

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
    "item_benchmark",
    "load_benchmark",
    "load_spec",
    "named_benchmark",
    "registered_benchmarks",
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
    "Comparison",
    "PairedScore",
    "compare",
    "compare_scored",
    "change",
    "run_label",
    "render_comparison",
    "plot_cost",
    "plot_frontier",
    "plot_usage",
    "write_plots",
    "MethodSummary",
    "Summary",
    "render_markdown",
    "render_methods_table",
    "summarise",
    "write_report",
    "text_extractor",
]
