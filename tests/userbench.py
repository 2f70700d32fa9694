"""A user's own benchmark, written by the tests: arithmetic questions with numeric answers
("2,125"), its spec file, and pools of experts for it (recordings, or an HTTP endpoint).

Three experts with known behaviour, so a test can say what each method must score:
``adder`` is right on additions and off by one on products, ``multiplier`` the reverse, and
``guesser`` is right on a third of the questions (which third depends on the seed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

EXPERTS = ("adder", "multiplier", "guesser")


def questions(n: int = 40) -> list[dict]:
    """``n`` items, half additions and half products, with answers written like "2,125"."""
    rows = []
    for i in range(n):
        a, b = 1000 + 37 * i, 1125 - 11 * i
        if i % 2 == 0:
            text, value, category = f"What is {a} + {b}?", a + b, "addition"
        else:
            a, b = 12 + i, 31 + 2 * i
            text, value, category = f"What is {a} times {b}?", a * b, "multiplication"
        rows.append({"qid": f"q{i:03d}", "problem": text, "solution": f"{value:,}", "kind": category})
    return rows


def truth(row: dict) -> int:
    return int(row["solution"].replace(",", ""))


def answer_value(model: str, row: dict, seed: int = 0) -> int:
    """What ``model`` answers to ``row`` (deterministic)."""
    right = truth(row)
    if model == "adder":
        return right if row["kind"] == "addition" else right + 1
    if model == "multiplier":
        return right if row["kind"] == "multiplication" else right - 1
    digest = int(hashlib.sha256(f"{row['qid']}/{seed}".encode()).hexdigest(), 16)
    return right if digest % 3 == 0 else right + 7


def answer_text(model: str, row: dict, seed: int = 0) -> str:
    value = answer_value(model, row, seed)
    if model == "guesser":
        return f"I estimate about ${value:,}.00 in total. The answer is ${value:,}.00"
    return f"Working it out step by step gives {value:,}. The answer is {value:,}."


def write_benchmark(folder: Path, n: int = 40) -> Path:
    """The data file (gzipped JSONL) and the spec file; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = questions(n)
    with gzip.open(folder / "arith.jsonl.gz", "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    spec = folder / "arith.toml"
    spec.write_text(
        "[benchmark]\n"
        'name = "arith"\n'
        'version = "1"\n'
        'data = "arith.jsonl.gz"\n'
        'answer_kind = "number"\n'
        "[benchmark.fields]\n"
        'id = "qid"\n'
        'question = "problem"\n'
        'answer = "solution"\n'
        'category = "kind"\n'
    )
    return spec


def write_replay_pool(folder: Path, n: int = 40) -> Path:
    """A pool of the three experts answering from recordings (``adder`` with its pred, the
    others from their text only). Replay cannot write new text, so the aggregator is an HTTP
    model nobody serves: the tests aggregate by vote and never call it."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "recordings.jsonl").open("w", encoding="utf-8") as out:
        for row in questions(n):
            for model in EXPERTS:
                record = {"model": model, "question_id": row["qid"], "text": answer_text(model, row)}
                if model == "adder":
                    record["pred"] = answer_value(model, row)  # a number, as recordings often hold it
                out.write(json.dumps(record) + "\n")
    models = "".join(
        f'\n[[models]]\nname = "{m}"\n[models.source]\nkind = "replay"\npath = "{folder / "recordings.jsonl"}"\n'
        f'model = "{m}"\nbenchmark = "arith"\n'
        for m in EXPERTS
    )
    models += '\n[[models]]\nname = "writer"\n[models.source]\nkind = "http"\nbase_url = "http://127.0.0.1:9/v1"\n'
    models += 'model = "writer"\n'
    (folder / "pool.toml").write_text(
        f'[pool]\nname = "arith-replay"\nversion = 1\naggregator = "writer"\nexperts = {list(EXPERTS)}\n' + models
    )
    return folder


def write_http_pool(folder: Path, base_url: str) -> Path:
    """The three experts behind one OpenAI-compatible endpoint (``answer_server.py``)."""
    folder.mkdir(parents=True, exist_ok=True)
    models = "".join(
        f'\n[[models]]\nname = "{m}"\nprompt_mode = "chat"\n[models.source]\nkind = "http"\n'
        f'base_url = "{base_url}"\nmodel = "{m}"\nconcurrency = 2\n'
        for m in EXPERTS
    )
    (folder / "pool.toml").write_text(
        f'[pool]\nname = "arith-http"\nversion = 1\naggregator = "adder"\nexperts = {list(EXPERTS)}\n' + models
    )
    return folder
