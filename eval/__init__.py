"""Benchmarks as data (loaders, prompts, extraction, metrics) and, later, runs and reports."""

from eval.benchmarks import BENCHMARKS, Benchmark, Question, choice_prompt, get_benchmark
from eval.compare import Comparison, PairedScore, compare, render_comparison
from eval.data import replay_path
from eval.extract import final_line_extractor, integer_extractor, letter_extractor, strip_thinking
from eval.plots import plot_frontier, plot_usage, write_plots
from eval.report import MethodSummary, Summary, render_markdown, render_methods_table, summarise, write_report
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
    "Comparison",
    "PairedScore",
    "compare",
    "render_comparison",
    "plot_frontier",
    "plot_usage",
    "write_plots",
    "MethodSummary",
    "Summary",
    "render_markdown",
    "render_methods_table",
    "summarise",
    "write_report",
]
