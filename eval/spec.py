"""A user's own benchmark from a TOML spec file.

    [benchmark]
    name = "gsm8k"
    version = "1"
    answer_kind = "number"               # letter | integer | number | math | text
    data = "gsm8k_test.jsonl.gz"         # JSONL, JSON list or CSV, gzipped or not; beside the spec
    prompt = "{question}\\n\\nSolve it step by step; end with 'The answer is N'."   # optional
    tolerance = 1e-6                     # number only (optional; default 1e-12)

    [benchmark.fields]                   # data key or CSV column of each part of an item
    question = "question"
    answer = "answer"
    id = "id"                            # optional: a digest of the question otherwise
    category = "subject"                 # optional: the benchmark's name otherwise
    options = "choices"                  # a list field, or columns: ["opa", "opb", "opc"]

Several splits instead of ``data``: ``[benchmark.splits]`` with ``test = "..."``,
``train = "..."`` (default split: ``default_split``, else ``test``, else the first). Every
problem is one line naming the file, the line and the field. Nothing in the data is executed.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import BadInput, ConfigError, NotFound, config_error
from common.query import MAX_OPTIONS, query_id
from eval.answers import AnswerKind, AnswerRule, integer_values
from eval.builtin import BENCHMARKS as BUILTIN
from eval.extract import numbers_in
from eval.prompts import DEFAULT_TEMPLATES, check_template, template_fields, template_prompt
from eval.question import LETTERS, Question
from eval.readers import data_format, read_csv, read_rows
from eval.record import Benchmark

SPEC_SUFFIX = ".toml"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class FieldMap(BaseModel):
    """Which data key (JSON) or column (CSV) holds each part of an item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(..., min_length=1, description="The question's text.")
    answer: str = Field(..., min_length=1, description="The gold answer.")
    id: str | None = Field(None, min_length=1, description="A unique id; a digest of the question when absent.")
    category: str | None = Field(None, min_length=1, description="The item's category; the benchmark's name if absent.")
    options: str | list[str] | None = Field(
        None, description="A field holding a list of options, or the fields of the options in order (A, B, ...)."
    )


class BenchmarkSpec(BaseModel):
    """The ``[benchmark]`` table of a spec file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=_NAME, description="The benchmark's name (recorded in results).")
    version: str = Field("1", min_length=1, description="Raise it when items, prompt or answers change.")
    description: str = ""
    answer_kind: AnswerKind
    data: str | None = Field(None, min_length=1, description="The one data file (split 'test').")
    splits: dict[str, str] = Field(default_factory=dict, description="Split name -> data file.")
    default_split: str | None = None
    prompt: str | None = Field(None, description="A template; placeholders {question} {options} {letters} {category}.")
    tolerance: float | None = Field(None, ge=0, description="answer_kind 'number': relative and absolute tolerance.")
    index_base: Literal[0, 1] | None = Field(
        None, description="answer_kind 'letter' with answers given as option numbers: the first option's number."
    )
    fields: FieldMap


class SpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: BenchmarkSpec


def _checked(spec: BenchmarkSpec, where: str) -> dict[str, str]:
    """Checks across fields; returns split -> data file as written."""
    if spec.name in BUILTIN:
        raise ConfigError(f"{where}: benchmark.name: {spec.name!r} is a built-in benchmark; choose another name")
    if (spec.data is None) == (not spec.splits):
        raise ConfigError(f"{where}: benchmark: give one data file (data = ...) or [benchmark.splits], not both")
    files = dict(spec.splits) if spec.splits else {"test": spec.data or ""}
    for split, file in files.items():
        if not re.match(_NAME, split):
            raise ConfigError(f"{where}: benchmark.splits.{split}: a split name is letters, digits, _ . -")
        if not file.strip():
            raise ConfigError(f"{where}: benchmark.splits.{split}: the data file is empty")
    if spec.default_split is not None and spec.default_split not in files:
        raise ConfigError(
            f"{where}: benchmark.default_split: {spec.default_split!r} is not one of the splits {', '.join(files)}"
        )
    kind = spec.answer_kind
    if spec.tolerance is not None and kind != AnswerKind.NUMBER:
        raise ConfigError(f"{where}: benchmark.tolerance: applies to answer_kind 'number' only, not {kind.value!r}")
    if spec.index_base is not None and kind != AnswerKind.LETTER:
        raise ConfigError(f"{where}: benchmark.index_base: applies to answer_kind 'letter' only, not {kind.value!r}")
    options = spec.fields.options
    if kind == AnswerKind.LETTER and not options:
        raise ConfigError(f"{where}: benchmark.fields.options: answer_kind 'letter' needs the options")
    if isinstance(options, list) and not 2 <= len(options) <= MAX_OPTIONS:
        raise ConfigError(f"{where}: benchmark.fields.options: give 2 to {MAX_OPTIONS} option fields")
    return files


def load_spec(path: Path) -> Benchmark:
    """The benchmark a spec file describes; its data files are checked to exist, read when a
    split is asked for."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFound(f"benchmark spec {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    try:
        spec = SpecFile.model_validate(raw).benchmark
    except ValidationError as exc:
        raise config_error(exc, str(path)) from exc
    where = str(path)
    files: dict[str, Path] = {}
    for split, file in _checked(spec, where).items():
        field = "benchmark.data" if spec.data else f"benchmark.splits.{split}"
        data = (path.parent / file).expanduser()
        if data_format(data) is None:
            raise ConfigError(f"{where}: {field}: {file!r} is not *.jsonl, *.json or *.csv (optionally .gz)")
        if not data.is_file():
            raise NotFound(f"{where}: {field}: data file {data} does not exist")
        files[split] = data
    has_options = spec.fields.options is not None
    template = spec.prompt if spec.prompt is not None else DEFAULT_TEMPLATES[spec.answer_kind]
    check_template(template, f"{where}: benchmark.prompt", has_options=has_options)
    if spec.answer_kind == AnswerKind.LETTER and "options" not in template_fields(template):
        raise ConfigError(f"{where}: benchmark.prompt: answer_kind 'letter' needs {{options}} in the prompt")
    rule = AnswerRule(spec.answer_kind) if spec.tolerance is None else AnswerRule(spec.answer_kind, spec.tolerance)
    default = spec.default_split or ("test" if "test" in files else next(iter(files)))
    return Benchmark(
        name=spec.name,
        version=spec.version,
        splits=tuple(files),
        load=lambda _data_dir, split: read_items(spec, files[split]),
        prompt=template_prompt(template),
        answers=rule,
        default_split=default,
        description=spec.description or f"from {path}",
    )


# --- items ----------------------------------------------------------------------------------


def _value(row: Mapping[str, Any], key: str, where: str, field: str) -> Any:
    value = row.get(key)
    if value is None:
        raise BadInput(f"{where}: {key!r} is missing (fields.{field})")
    return value


def _text(row: Mapping[str, Any], key: str, where: str, field: str, *, numbers: bool = True) -> str:
    value = _value(row, key, where, field)
    allowed: tuple[type, ...] = (str, int, float) if numbers else (str,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise BadInput(f"{where}: {key!r} is a {type(value).__name__}, not text (fields.{field})")
    text = str(value).strip()
    if not text:
        raise BadInput(f"{where}: {key!r} is empty (fields.{field})")
    return text


def _options(row: Mapping[str, Any], fields: FieldMap, where: str) -> tuple[str, ...]:
    if fields.options is None:
        return ()
    if isinstance(fields.options, list):
        values: list[Any] = [row.get(key) for key in fields.options]
        keys = list(fields.options)
    else:
        raw = _value(row, fields.options, where, "options")
        if isinstance(raw, str):  # a CSV cell holding a JSON list
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raw = None
        if not isinstance(raw, list):
            raise BadInput(f"{where}: {fields.options!r} is not a list of options (fields.options)")
        values, keys = raw, [f"{fields.options}[{i}]" for i in range(len(raw))]
    while values and (values[-1] is None or str(values[-1]).strip() == ""):
        values, keys = values[:-1], keys[:-1]
    options = []
    for key, value in zip(keys, values):
        if isinstance(value, bool) or not isinstance(value, str | int | float) or not str(value).strip():
            raise BadInput(f"{where}: option {key!r} is missing or empty (fields.options)")
        options.append(str(value).strip())
    if not 2 <= len(options) <= MAX_OPTIONS:
        raise BadInput(f"{where}: {len(options)} options; give 2 to {MAX_OPTIONS} (fields.options)")
    return tuple(options)


def _gold(spec: BenchmarkSpec, answer: str, options: tuple[str, ...], where: str) -> str:
    """The gold answer as checked: a letter for letter items, the whole numbers for integers."""
    kind, key = spec.answer_kind, spec.fields.answer
    if kind == AnswerKind.LETTER:
        letters = LETTERS[: len(options)]
        if spec.index_base is not None:
            if answer.lstrip("-").isdigit() and 0 <= int(answer) - spec.index_base < len(options):
                return letters[int(answer) - spec.index_base]
            raise BadInput(
                f"{where}: {key!r} is {answer!r}, not an option number from {spec.index_base} (fields.answer)"
            )
        letter = answer.strip("()").upper()
        if len(letter) == 1 and letter in letters:
            return letter
        if answer in options:
            return letters[options.index(answer)]
        raise BadInput(f"{where}: {key!r} is {answer!r}, neither a letter {letters[0]}-{letters[-1]} nor an option")
    if kind == AnswerKind.INTEGER:
        values = integer_values(answer)
        if not values:
            raise BadInput(f"{where}: {key!r} is {answer!r}, not an integer (fields.answer)")
        return " or ".join(str(v) for v in sorted(values))
    if kind == AnswerKind.NUMBER and not numbers_in(answer):
        raise BadInput(f"{where}: {key!r} is {answer!r}, not a number (fields.answer)")
    return answer


def read_items(spec: BenchmarkSpec, path: Path) -> list[Question]:
    """The items of one data file of a spec, each row checked."""
    fields = spec.fields
    if data_format(path) == ".csv":
        columns, _ = read_csv(path)
        mapped = {"question": fields.question, "answer": fields.answer, "id": fields.id, "category": fields.category}
        if isinstance(fields.options, list):
            mapped |= {f"options[{i}]": key for i, key in enumerate(fields.options)}
        elif fields.options:
            mapped["options"] = fields.options
        for field, column in mapped.items():
            if column is not None and column not in columns:
                raise BadInput(f"{path}:1: no column {column!r} (fields.{field}); columns: {', '.join(columns)}")
    seen: dict[str, int] = {}
    out = []
    for line, row in read_rows(path):
        where = f"{path}:{line}"
        if not isinstance(row, Mapping):
            raise BadInput(f"{where}: expected an object with fields, found {type(row).__name__}")
        text = _text(row, fields.question, where, "question", numbers=False)
        options = _options(row, fields, where)
        gold = _gold(spec, _text(row, fields.answer, where, "answer"), options, where)
        item_id = _text(row, fields.id, where, "id") if fields.id else query_id(text, options)
        if item_id in seen:
            what = f"id {item_id!r}" if fields.id else "the same question"
            raise BadInput(f"{where}: {what} repeats line {seen[item_id]}")
        seen[item_id] = line
        category = _text(row, fields.category, where, "category") if fields.category else spec.name
        try:
            question = Question(
                id=item_id, benchmark=spec.name, text=text, options=options, answer=gold, category=category
            )
        except ValidationError as exc:
            raise BadInput(str(config_error(exc, where))) from exc
        out.append(question)
    if not out:
        raise BadInput(f"{path}: no items")
    return out
