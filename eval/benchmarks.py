"""Benchmarks as data: where the items live, how a prompt is written, how answers are read.

Each ``Benchmark`` names a loader (reading the files where they are, never copying them),
a prompt template of our own, an extractor and a version. Loaders accept any directory
laid out like ``../shared/data/benchmarks``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import BadInput, NotFound
from common.names import unknown_name
from common.query import Query
from eval.extract import Extractor, integer_extractor, letter_extractor

LETTERS = "ABCDEFGHIJ"


class Question(Query):
    """One benchmark item, normalised across benchmarks: a query with its gold answer."""

    benchmark: str
    answer: str
    category: str | None = None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise NotFound(f"benchmark file {path} does not exist")
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(_read_text(path).split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
    return rows


_MMLU_PRO_FILES = {"test": "test.jsonl.gz", "validation": "validation.jsonl"}


def load_mmlu_pro(root: Path, split: str = "test") -> list[Question]:
    if split not in _MMLU_PRO_FILES:
        raise unknown_name("MMLU-Pro split", split, _MMLU_PRO_FILES)
    name = _MMLU_PRO_FILES[split]
    out = []
    for row in _jsonl(root / "mmlu_pro" / name):
        options = tuple(o for o in row["options"] if o.strip() != "N/A")
        out.append(
            Question(
                id=str(row["question_id"]),
                benchmark="mmlu_pro",
                text=row["question"],
                options=options,
                answer=row["answer"],
                category=row["category"],
            )
        )
    return out


def load_medmcqa(root: Path, split: str = "dev") -> list[Question]:
    out = []
    for row in _jsonl(root / "medmcqa" / f"{split}.jsonl"):
        out.append(
            Question(
                id=str(row["id"]),
                benchmark="medmcqa",
                text=row["question"],
                options=tuple(row[k] for k in ("opa", "opb", "opc", "opd")),
                answer=LETTERS[int(row["cop"]) - 1],
                category=row.get("subject_name"),
            )
        )
    return out


def load_aime(root: Path, split: str = "aime24") -> list[Question]:
    return [
        Question(
            id=str(row["id"]),
            benchmark="aime",
            text=row["problem"],
            answer=str(int(row["answer"])),
            category="mathematics",
        )
        for row in _jsonl(root / "aime" / f"{split}.jsonl")
    ]


def load_gpqa(root: Path, split: str = "diamond") -> list[Question]:
    """GPQA with its options shuffled by a seed drawn from each record id (stable)."""
    reader = csv.DictReader(io.StringIO(_read_text(root / "gpqa" / f"gpqa_{split}.csv.gz")))
    out = []
    for row in reader:
        right = row["Correct Answer"].strip()
        options = [right] + [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
        random.Random(row["Record ID"]).shuffle(options)
        out.append(
            Question(
                id=row["Record ID"],
                benchmark="gpqa",
                text=row["Question"].strip(),
                options=tuple(options),
                answer=LETTERS[options.index(right)],
                category=row.get("Subdomain") or None,
            )
        )
    return out


def with_options(question: Query) -> str:
    """The question followed by its lettered options (the question alone when it has none)."""
    if not question.options:
        return question.text
    return f"{question.text}\n\nOptions:\n{format_options(question.options)}"


def format_options(options: tuple[str, ...]) -> str:
    return "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))


def choice_prompt(question: Query) -> str:
    letters = LETTERS[: len(question.options)]
    return (
        f"{question.text.strip()}\n\nOptions:\n{format_options(question.options)}\n\n"
        f'Think step by step, then finish with the line "The answer is (X)" where X is one of '
        f"{', '.join(letters)}."
    )


def integer_prompt(question: Question) -> str:
    return (
        f"{question.text.strip()}\n\nReason step by step. The answer is an integer from 0 to 999; "
        f"put it in \\boxed{{}} at the end."
    )


@dataclass(frozen=True)
class Benchmark:
    name: str
    version: str
    default_split: str
    load: Callable[[Path, str], list[Question]]
    prompt: Callable[[Question], str]
    answer_format: str
    extractor: Callable[[Question], Extractor]

    def extract(self, question: Question, text: str) -> str | None:
        return self.extractor(question)(text)

    def questions(self, data_dir: Path, split: str | None = None) -> list[Question]:
        return self.load(Path(data_dir) / "benchmarks", split or self.default_split)


LETTER_FORMAT = 'End with the line "The answer is (X)", X being the letter of the chosen option.'

BENCHMARKS: dict[str, Benchmark] = {
    "mmlu_pro": Benchmark(
        "mmlu_pro",
        "1",
        "test",
        load_mmlu_pro,
        choice_prompt,
        LETTER_FORMAT,
        lambda q: letter_extractor(len(q.options) or 10),
    ),
    "gpqa": Benchmark("gpqa", "1", "diamond", load_gpqa, choice_prompt, LETTER_FORMAT, lambda q: letter_extractor(4)),
    "medmcqa": Benchmark(
        "medmcqa", "1", "dev", load_medmcqa, choice_prompt, LETTER_FORMAT, lambda q: letter_extractor(4)
    ),
    "aime": Benchmark(
        "aime",
        "1",
        "aime24",
        load_aime,
        integer_prompt,
        "End with the final integer answer in \\boxed{}.",
        lambda q: integer_extractor(0, 999),
    ),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise unknown_name("benchmark", name, BENCHMARKS) from None
