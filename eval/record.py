"""What a benchmark is: where its items come from, how they are asked, how answers are judged."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.answers import Judge
from common.errors import ConfigError, NotFound
from eval.answers import AnswerKind, AnswerRule
from eval.question import Question

Loader = Callable[[Path, str], list[Question]]
"""(data folder, split) -> the split's items."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, built in (``eval.builtin``) or from a user's spec file (``eval.spec``).

    ``load`` reads one split of the items where they lie; ``prompt`` writes the prompt of one
    item (a pure function of it); ``answers`` reads and judges answers of the benchmark's kind.
    """

    name: str
    version: str
    splits: tuple[str, ...]
    load: Loader
    prompt: Callable[[Question], str]
    answers: AnswerRule
    default_split: str = ""
    """Empty: the first of ``splits``."""
    description: str = ""
    items_of: str = ""
    """The benchmark whose items this one asks, when another's (MMLU-Pro 5-shot asks MMLU-Pro's
    items with worked examples first): recordings of that benchmark answer its questions. Empty:
    its own."""

    def __post_init__(self) -> None:
        if not self.splits:
            raise ConfigError(f"benchmark {self.name!r} offers no split")
        if not self.default_split:
            object.__setattr__(self, "default_split", self.splits[0])
        elif self.default_split not in self.splits:
            raise ConfigError(
                f"benchmark {self.name!r}: default split {self.default_split!r} is not one of {', '.join(self.splits)}"
            )

    @property
    def item_benchmark(self) -> str:
        """The benchmark whose items this one asks: ``items_of``, else its own name."""
        return self.items_of or self.name

    @property
    def answer_kind(self) -> AnswerKind:
        return self.answers.kind

    @property
    def answer_format(self) -> str:
        """How a model is told to state its answer (also given to the aggregator)."""
        return self.answers.answer_format

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            close = difflib.get_close_matches(split, self.splits, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise NotFound(f"unknown {self.name} split {split!r}; {hint}splits: {', '.join(self.splits)}")
        return split

    def questions(self, data_dir: Path, split: str | None = None) -> list[Question]:
        """The items of ``split`` (default: the benchmark's own), read from ``data_dir``
        (built-ins; a spec's files are found beside the spec)."""
        return self.load(Path(data_dir), self.check_split(split or self.default_split))

    def extract(self, question: Question, text: str) -> str | None:
        """The answer stated in a reply, or None."""
        return self.answers.extract(question, text)

    def judge(self, question: Question) -> Judge:
        """The judge of ``question``'s answers: the one rule by which every door scores and votes."""
        return self.answers.judge(question)

    def check(self, question: Question, answer: str | None) -> bool:
        """Is an extracted answer right for ``question``?"""
        return self.answers.check(question, answer)

    def score(self, question: Question, text: str) -> bool:
        """Is the answer stated in a reply right?"""
        return self.answers.score(question, text)
