"""The built-in benchmarks: MMLU-Pro (0-shot and 5-shot), GPQA, AIME, MedMCQA.

Loaders read the files where they lie, in any folder laid out like
``../shared/data/benchmarks`` (see that folder's README); nothing is copied. Each benchmark
also offers the Symbolic-MoE splits ``symbolic_train`` (to profile) and ``symbolic_test``
(to report) of ``eval.symbolic``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common.errors import BadInput, NotFound
from eval.answers import AnswerKind, AnswerRule
from eval.prompts import choice_prompt, few_shot_preamble, few_shot_prompt, integer_prompt, worked_example
from eval.question import LETTERS, Question
from eval.readers import read_csv, read_jsonl
from eval.record import Benchmark
from eval.symbolic import SYMBOLIC_SPLITS, load_symbolic

BENCHMARKS_FOLDER = "benchmarks"
"""Where the benchmark files lie inside the data folder (``Settings.data_dir``)."""


def _get(row: Any, key: str, path: Path, line: int) -> Any:
    if not isinstance(row, Mapping):
        raise BadInput(f"{path}:{line}: expected an object, found {type(row).__name__}")
    if key not in row or row[key] is None:
        raise BadInput(f"{path}:{line}: field {key!r} is missing")
    return row[key]


def _answer_letter(value: Any, n_options: int, path: Path, line: int, key: str) -> str:
    letter = str(value).strip().upper()
    if len(letter) != 1 or letter not in LETTERS[:n_options]:
        raise BadInput(f"{path}:{line}: field {key!r} is {value!r}, not one of the {n_options} option letters")
    return letter


# --- MMLU-Pro -------------------------------------------------------------------------------

MMLU_PRO_FILES = {"test": "test.jsonl.gz", "validation": "validation.jsonl"}


def load_mmlu_pro(root: Path, split: str = "test") -> list[Question]:
    """MMLU-Pro's ``test`` or ``validation`` split; the placeholder option "N/A" is dropped."""
    return [question for question, _ in _mmlu_pro_rows(root, split)]


def _mmlu_pro_rows(root: Path, split: str) -> list[tuple[Question, str]]:
    """(item, its worked answer ``cot_content``) of an MMLU-Pro file."""
    if split not in MMLU_PRO_FILES:
        raise NotFound(f"unknown mmlu_pro split {split!r}; splits: {', '.join(MMLU_PRO_FILES)}")
    path = root / "mmlu_pro" / MMLU_PRO_FILES[split]
    out = []
    for line, row in read_jsonl(path):
        options = tuple(str(o) for o in _get(row, "options", path, line) if str(o).strip() != "N/A")
        question = Question(
            id=str(_get(row, "question_id", path, line)),
            benchmark="mmlu_pro",
            text=_get(row, "question", path, line),
            options=options,
            answer=_answer_letter(_get(row, "answer", path, line), len(options), path, line, "answer"),
            category=_get(row, "category", path, line),
        )
        out.append((question, str(row.get("cot_content") or "")))
    return out


SHOTS = 5


def five_shot_preambles(root: Path, shots: int = SHOTS) -> dict[str, str]:
    """Category -> the worked examples shown before its questions: the validation items of the
    category, with their chains of thought."""
    by_category: dict[str, list[str]] = defaultdict(list)
    for question, reasoning in _mmlu_pro_rows(root, "validation"):
        if reasoning.strip() and question.category and len(by_category[question.category]) < shots:
            by_category[question.category].append(worked_example(question, reasoning))
    return {category: few_shot_preamble(category, examples) for category, examples in by_category.items()}


def with_preambles(questions: list[Question], preambles: Mapping[str, str], source: Path) -> list[Question]:
    out = []
    for question in questions:
        preamble = preambles.get(question.category or "")
        if preamble is None:
            raise NotFound(f"{source}: no worked examples for category {question.category!r} (item {question.id})")
        out.append(question.model_copy(update={"preamble": preamble}))
    return out


# --- GPQA, AIME, MedMCQA --------------------------------------------------------------------

GPQA_SPLITS = ("diamond", "main", "extended")


def load_gpqa(root: Path, split: str = "diamond") -> list[Question]:
    """GPQA with its options shuffled by a seed drawn from each record id (stable)."""
    path = root / "gpqa" / f"gpqa_{split}.csv.gz"
    _, rows = read_csv(path)
    out = []
    for line, row in rows:
        right = _get(row, "Correct Answer", path, line).strip()
        options = [right] + [_get(row, f"Incorrect Answer {i}", path, line).strip() for i in (1, 2, 3)]
        record = _get(row, "Record ID", path, line)
        random.Random(record).shuffle(options)
        out.append(
            Question(
                id=record,
                benchmark="gpqa",
                text=_get(row, "Question", path, line).strip(),
                options=tuple(options),
                answer=LETTERS[options.index(right)],
                category=row.get("Subdomain") or None,
            )
        )
    return out


AIME_SPLITS = ("aime24", "aime25")


def load_aime(root: Path, split: str = "aime24") -> list[Question]:
    """AIME problems; the gold answer is written without leading zeros ("025" -> "25")."""
    path = root / "aime" / f"{split}.jsonl"
    out = []
    for line, row in read_jsonl(path):
        raw = str(_get(row, "answer", path, line)).strip()
        if not raw.isdigit():
            raise BadInput(f"{path}:{line}: field 'answer' is {raw!r}, not an integer")
        out.append(
            Question(
                id=str(_get(row, "id", path, line)),
                benchmark="aime",
                text=_get(row, "problem", path, line),
                answer=str(int(raw)),
                category="mathematics",
            )
        )
    return out


def load_medmcqa(root: Path, split: str = "dev") -> list[Question]:
    path = root / "medmcqa" / f"{split}.jsonl"
    out = []
    for line, row in read_jsonl(path):
        correct = _get(row, "cop", path, line)
        if not isinstance(correct, int) or not 1 <= correct <= 4:
            raise BadInput(f"{path}:{line}: field 'cop' is {correct!r}, not an option number 1-4")
        out.append(
            Question(
                id=str(_get(row, "id", path, line)),
                benchmark="medmcqa",
                text=_get(row, "question", path, line),
                options=tuple(str(_get(row, k, path, line)) for k in ("opa", "opb", "opc", "opd")),
                answer=LETTERS[correct - 1],
                category=row.get("subject_name"),
            )
        )
    return out


# --- the table ------------------------------------------------------------------------------

RootLoader = Callable[[Path, str], list[Question]]


def _with_symbolic(benchmark: str, originals: RootLoader, splits: tuple[str, ...]) -> RootLoader:
    """A loader of the benchmark's own splits and its two Symbolic-MoE splits, the latter matched
    to the items of ``splits`` of the original."""

    def load(root: Path, split: str) -> list[Question]:
        if split in SYMBOLIC_SPLITS:
            every = [q for name in splits for q in originals(root, name)]
            train = load_symbolic(root, benchmark, "symbolic_train", every) if split == "symbolic_test" else []
            return load_symbolic(root, benchmark, split, every, avoid={q.id for q in train})
        return originals(root, split)

    return load


def _in_data_dir(load: RootLoader) -> RootLoader:
    return lambda data_dir, split: load(data_dir / BENCHMARKS_FOLDER, split)


_mmlu_pro_all = _with_symbolic("mmlu_pro", load_mmlu_pro, tuple(MMLU_PRO_FILES))


def _mmlu_pro_5shot(root: Path, split: str) -> list[Question]:
    questions = _mmlu_pro_all(root, split)
    return [
        q.model_copy(update={"benchmark": "mmlu_pro_5shot"})
        for q in with_preambles(questions, five_shot_preambles(root), root / "mmlu_pro" / "validation.jsonl")
    ]


def _symbolic(*own: str) -> tuple[str, ...]:
    return (*own, *SYMBOLIC_SPLITS)


LETTER = AnswerRule(AnswerKind.LETTER)

BENCHMARKS: dict[str, Benchmark] = {
    "mmlu_pro": Benchmark(
        name="mmlu_pro",
        version="1",
        splits=_symbolic("test", "validation"),
        load=_in_data_dir(_mmlu_pro_all),
        prompt=choice_prompt,
        answers=LETTER,
        description="MMLU-Pro, 0-shot chain of thought, 3-10 options",
    ),
    "mmlu_pro_5shot": Benchmark(
        name="mmlu_pro_5shot",
        version="1",
        splits=_symbolic("test"),
        load=_in_data_dir(_mmlu_pro_5shot),
        prompt=few_shot_prompt,
        answers=LETTER,
        description="MMLU-Pro, 5 worked examples of the item's category (validation split) first",
        items_of="mmlu_pro",
    ),
    "gpqa": Benchmark(
        name="gpqa",
        version="1",
        splits=_symbolic(*GPQA_SPLITS),
        load=_in_data_dir(_with_symbolic("gpqa", load_gpqa, GPQA_SPLITS)),
        prompt=choice_prompt,
        answers=LETTER,
        description="GPQA, 4 options shuffled by a seed from each record id",
    ),
    "aime": Benchmark(
        name="aime",
        version="2",  # 2: integer answers read with separators and decimals ("2,125", "25.0")
        splits=_symbolic(*AIME_SPLITS),
        load=_in_data_dir(_with_symbolic("aime", load_aime, AIME_SPLITS)),
        prompt=integer_prompt,
        answers=AnswerRule(AnswerKind.INTEGER, low=0, high=999),
        description="AIME, integer answers 0-999",
    ),
    "medmcqa": Benchmark(
        name="medmcqa",
        version="1",
        splits=_symbolic("dev"),
        load=_in_data_dir(_with_symbolic("medmcqa", load_medmcqa, ("dev",))),
        prompt=choice_prompt,
        answers=LETTER,
        description="MedMCQA validation split, 4 options",
    ),
}
"""The built-in benchmarks by name."""
