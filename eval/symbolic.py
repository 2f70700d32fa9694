"""The Symbolic-MoE splits of the built-in benchmarks: ``symbolic_train`` (to profile) and
``symbolic_test`` (to report), files ``symbolic_moe/{MMLU_Pro,GPQA,AIME24,MedMCQA}_{train,test}.json.gz``.

Each file is a JSON list of ``{question, gold_answer[, category]}`` with the options written
into the question as "... The options are: (A) ... (B) ...". An item that can be matched to
the original benchmark's item (same question, same options, same right option) *is* that
item: its id, text, options, answer and category, so recordings keyed by the original id
answer it. Any other item gets an id that is a digest of its text, and its options are
parsed out of the text.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.errors import BadInput, NotFound
from common.query import query_id
from eval.answers import integer_values
from eval.question import LETTERS, Question
from eval.readers import read_json_list

log = logging.getLogger(__name__)

SYMBOLIC_SPLITS = {"symbolic_train": "train", "symbolic_test": "test"}
SYMBOLIC_FILES = {"mmlu_pro": "MMLU_Pro", "gpqa": "GPQA", "aime": "AIME24", "medmcqa": "MedMCQA"}
DEFAULT_CATEGORY = {"aime": "mathematics"}
WITHOUT_OPTIONS = {"aime"}
OPTIONS_MARK = "The options are:"


def symbolic_file(root: Path, benchmark: str, split: str) -> Path:
    return root / "symbolic_moe" / f"{SYMBOLIC_FILES[benchmark]}_{SYMBOLIC_SPLITS[split]}.json.gz"


def split_options(text: str) -> tuple[str, str, tuple[str, ...]]:
    """(question, options as written, options) of a text whose options follow its last
    "The options are:" as "(A) ... (B) ..."; (text, "", ()) when it has none. An option
    holding a later letter's marker, such as " (C) ", is cut there."""
    at = text.rfind(OPTIONS_MARK)
    rest = text[at + len(OPTIONS_MARK) :].strip() if at >= 0 else ""
    if not rest.startswith("(A)"):
        return text.strip(), "", ()
    starts = [0]
    for letter in LETTERS[1:]:
        found = re.compile(rf"\s\({letter}\)(?:\s|$)").search(rest, starts[-1] + 3)
        if found is None:
            break
        starts.append(found.start() + 1)
    ends = [*starts[1:], len(rest)]
    return text[:at].strip(), rest, tuple(rest[start + 3 : end].strip() for start, end in zip(starts, ends))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _option_key(option: str) -> str:
    return _squash(option).rstrip(".").strip()


def _same_item(original: Question, written: str, options: tuple[str, ...], gold: str) -> bool:
    """The same options with the same one right: in the same order (compared as written, so
    options holding "(X)" compare too) or in another order (GPQA's are shuffled). For items
    without options: the same integer answer."""
    if not options:
        return bool(integer_values(gold) & integer_values(original.answer))
    in_order = " ".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(original.options))
    if _option_key(in_order) == _option_key(written):
        return gold == original.answer
    mine, theirs = [_option_key(o) for o in options], [_option_key(o) for o in original.options]
    if sorted(mine) != sorted(theirs) or gold not in LETTERS[: len(mine)]:
        return False
    return mine[LETTERS.index(gold)] == theirs[LETTERS.index(original.answer)]


def _id_order(question: Question) -> tuple[int, int, str]:
    return (0, int(question.id), "") if question.id.isdigit() else (1, 0, question.id)


def _letters_and_digits(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


PREFIX_CHARS = 80
"""Items without options match an original when either text (letters and digits only) starts
with the other and the shorter holds at least this many: some carry a solution or a diagram
after the problem, and their LaTeX is spaced differently."""


class _Originals:
    """The original items, found by their question text: as written (spacing aside) for items
    with options; by letters and digits, one a prefix of the other, for items without."""

    def __init__(self, originals: Iterable[Question]) -> None:
        self.by_text: dict[str, list[Question]] = defaultdict(list)
        self.without_options: list[tuple[str, Question]] = []
        for question in originals:
            self.by_text[_squash(question.text)].append(question)
            if not question.options:
                self.without_options.append((_letters_and_digits(question.text), question))

    def matches(self, stem: str, written: str, options: tuple[str, ...], gold: str) -> list[Question]:
        """Every original this item is, in id order (the originals hold a few exact repeats)."""
        candidates = self.by_text.get(_squash(stem), [])
        if not candidates and not options:
            key = _letters_and_digits(stem)
            candidates = [
                q
                for text, q in self.without_options
                if min(len(text), len(key)) >= PREFIX_CHARS and (key.startswith(text) or text.startswith(key))
            ]
        found = {q.id: q for q in candidates if _same_item(q, written, options, gold)}
        return sorted(found.values(), key=_id_order)


def _text_field(row: Any, key: str, path: Path, number: int) -> str:
    if not isinstance(row, Mapping):
        raise BadInput(f"{path}: item {number}: expected an object, found {type(row).__name__}")
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{path}: item {number}: field {key!r} is missing or empty")
    return value


def load_symbolic(
    root: Path, benchmark: str, split: str, originals: Sequence[Question], avoid: Collection[str] = ()
) -> list[Question]:
    """The Symbolic-MoE ``split`` of ``benchmark``, matched where possible against ``originals``
    (the original benchmark's items). An item matching several originals (exact repeats in the
    benchmark) takes the first in id order not yet taken, and not in ``avoid`` (the other
    split's ids) while another is left. A repeated item is kept once."""
    if benchmark not in SYMBOLIC_FILES or split not in SYMBOLIC_SPLITS:
        raise NotFound(f"no Symbolic-MoE split {split!r} of {benchmark!r}")
    path = symbolic_file(root, benchmark, split)
    index = _Originals(originals)
    out: dict[str, Question] = {}
    matched = repeated = 0
    for number, row in read_json_list(path):
        text = _text_field(row, "question", path, number)
        gold = _text_field(row, "gold_answer", path, number).strip()
        stem, written, options = split_options(text)
        if options:
            gold = gold.upper()
            if gold not in LETTERS[: len(options)]:
                raise BadInput(
                    f"{path}: item {number}: gold_answer {gold!r} is not one of {len(options)} option letters"
                )
        elif benchmark not in WITHOUT_OPTIONS:
            raise BadInput(f"{path}: item {number}: no options found after {OPTIONS_MARK!r}")
        elif not integer_values(gold):
            raise BadInput(f"{path}: item {number}: gold_answer {gold!r} holds no integer")
        else:
            gold = " or ".join(str(v) for v in sorted(integer_values(gold)))
        found = sorted(
            (q for q in index.matches(stem, written, options, gold) if q.id not in out), key=lambda q: q.id in avoid
        )
        if found:
            question = found[0]
            matched += 1
        else:
            category = row.get("category") or DEFAULT_CATEGORY.get(benchmark)
            question = Question(
                id=query_id(text), benchmark=benchmark, text=stem, options=options, answer=gold, category=category
            )
        if question.id in out:
            repeated += 1
            continue
        out[question.id] = question
    log.info(
        "%s %s: %d items, %d matched to the original benchmark, %d repeats dropped",
        benchmark,
        split,
        len(out),
        matched,
        repeated,
    )
    return list(out.values())
