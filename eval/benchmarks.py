"""Benchmarks as data: the registry of built-ins, and ``load_benchmark`` for a name or a
user's spec file.

    bench = load_benchmark("mmlu_pro")              # built in
    bench = load_benchmark("my_bench/gsm8k.toml")   # a spec file (eval.spec)
    items = bench.questions(data_dir, "test")
    prompt = bench.prompt(items[0])
    right = bench.check(items[0], bench.extract(items[0], reply))

The names older code imports from here (``Question``, ``choice_prompt``, the loaders...)
are kept.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.errors import ConfigError, NotFound
from common.names import unknown_name
from eval.answers import AnswerKind, AnswerRule
from eval.builtin import BENCHMARKS, load_aime, load_gpqa, load_medmcqa, load_mmlu_pro
from eval.prompts import LETTER_FORMAT, choice_prompt, few_shot_prompt, integer_prompt
from eval.question import LETTERS, Question, format_options, with_options
from eval.record import Benchmark
from eval.spec import SPEC_SUFFIX, load_spec

__all__ = [
    "BENCHMARKS",
    "LETTERS",
    "LETTER_FORMAT",
    "AnswerKind",
    "AnswerRule",
    "Benchmark",
    "Question",
    "choice_prompt",
    "few_shot_prompt",
    "format_options",
    "get_benchmark",
    "integer_prompt",
    "item_benchmark",
    "load_aime",
    "load_benchmark",
    "load_gpqa",
    "load_medmcqa",
    "load_mmlu_pro",
    "named_benchmark",
    "registered_benchmarks",
    "with_options",
]


def get_benchmark(name: str) -> Benchmark:
    """A built-in benchmark by name; an unknown name suggests the closest."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise unknown_name("benchmark", name, BENCHMARKS) from None


def item_benchmark(name: str) -> str:
    """The benchmark whose items a benchmark named ``name`` asks (``Benchmark.items_of``): another
    built-in's for a variant of it, else ``name`` itself (a spec file's benchmark too)."""
    known = BENCHMARKS.get(name)
    return known.item_benchmark if known is not None else name


def load_benchmark(name_or_path: str | Path) -> Benchmark:
    """A built-in benchmark by name, or a user's benchmark from a spec file (``*.toml``)."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(SPEC_SUFFIX) or "/" in text or "\\" in text:
        return load_spec(Path(name_or_path))
    if text in BENCHMARKS:
        return BENCHMARKS[text]
    error = unknown_name("benchmark", text, BENCHMARKS)
    raise NotFound(f"{error}; a benchmark of your own is given as the path of its {SPEC_SUFFIX} spec file")


def registered_benchmarks(spec_files: Iterable[Path] = ()) -> dict[str, Benchmark]:
    """The benchmarks known by name where names are all a client may give (the service, its job
    workers): the built-ins and the spec files an operator registered, each by its spec's name.
    A name given twice is a ConfigError naming both."""
    known: dict[str, Benchmark] = dict(BENCHMARKS)
    where: dict[str, str] = {name: "built in" for name in BENCHMARKS}
    for path in spec_files:
        bench = load_spec(Path(path))
        if bench.name in known:
            raise ConfigError(f"benchmark spec {path}: the name {bench.name!r} is taken ({where[bench.name]})")
        known[bench.name] = bench
        where[bench.name] = f"by {path}"
    return known


def named_benchmark(name: str, known: Mapping[str, Benchmark]) -> Benchmark:
    """One of ``known`` by name; anything else (a path included) is NotFound naming them all."""
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise NotFound(f"unknown benchmark {name!r}{hint}; the benchmarks known here are {', '.join(sorted(known))}")
