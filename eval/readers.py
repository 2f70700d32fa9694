"""Reading benchmark files where they lie: JSONL, JSON lists and CSV, gzipped or not.

Rows come with the line (JSONL, CSV) or item number (JSON list) a message can name.
Nothing read is executed: JSON and CSV parsers only.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import BadInput, NotFound

FORMATS = (".jsonl", ".json", ".csv")
"""Data file formats, by suffix (before an optional ``.gz``)."""


def data_format(path: Path) -> str | None:
    """``.jsonl``, ``.json`` or ``.csv`` from the file name (``x.csv.gz`` is ``.csv``); None if neither."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in FORMATS else None


def read_text(path: Path) -> str:
    """The file's text, gunzipped when it is gzip (by its first bytes, whatever its name)."""
    if not path.is_file():
        raise NotFound(f"benchmark file {path} does not exist")
    try:
        raw = path.read_bytes()
        return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{path}: cannot be read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line. Lines end at ``\\n`` only: JSON strings may
    hold other Unicode line separators."""
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}:{number}: not valid JSON: {exc.msg}") from exc


def read_json_list(path: Path) -> Iterator[tuple[int, Any]]:
    """(item number from 1, value) of a file holding one JSON list."""
    try:
        items = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(items, list):
        raise BadInput(f"{path}: expected a JSON list of items, found {type(items).__name__}")
    yield from enumerate(items, 1)


def read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """(column names, rows as (line number where the row ends, column -> text))."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise BadInput(f"{path}:1: not valid CSV: {exc}") from exc
    if not columns:
        raise BadInput(f"{path}: empty CSV file (no header line)")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        try:
            for row in reader:
                if None in row:
                    raise BadInput(f"{path}:{reader.line_num}: more cells than the {len(columns)} columns")
                yield reader.line_num, row
        except csv.Error as exc:
            raise BadInput(f"{path}:{reader.line_num}: not valid CSV: {exc}") from exc

    return columns, rows()


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or item number, row) of a JSONL, JSON-list or CSV file, by its name."""
    kind = data_format(path)
    if kind == ".jsonl":
        return read_jsonl(path)
    if kind == ".json":
        return read_json_list(path)
    if kind == ".csv":
        return read_csv(path)[1]
    raise BadInput(f"{path}: unknown data format; name it *.jsonl, *.json or *.csv (optionally .gz)")
