"""The replay engine answers from recordings, never makes one up, and reads the shared file."""

from __future__ import annotations

import gzip
import json

import pytest

from batching.engines import ReplayEngine
from common.errors import BadInput, NotFound, ReplayMiss
from common.recordings import ReplayBook
from common.requests import Request

ROWS = [
    {"model": "m1", "question_id": 1, "text": "so The answer is (B).", "pred": "B", "correct": 1},
    {"model": "m1", "question_id": 2, "text": "The answer is (C).", "pred": "C", "correct": 0},
    {"model": "m2", "question_id": 1, "text": "The answer is (A)."},
]


@pytest.fixture(params=["plain", "gzip"])
def recordings(tmp_path, request):
    body = "\n".join(json.dumps(r) for r in ROWS) + "\n"
    if request.param == "gzip":
        path = tmp_path / "rec.jsonl.gz"
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path = tmp_path / "rec.jsonl"
        path.write_text(body)
    return path


def test_answers_recorded_text(recordings, replay_spec):
    engine = ReplayEngine(replay_spec(recordings, "m1"))
    engine.load()
    out = engine.generate([Request.user("a", "q?", question_id="2"), Request.user("b", "q?", question_id="1")])
    assert [g.text for g in out] == ["The answer is (C).", "so The answer is (B)."]
    assert [g.request_id for g in out] == ["a", "b"]
    assert out[0].tokens_out == 4


def test_unknown_key_is_an_error(recordings, replay_spec):
    engine = ReplayEngine(replay_spec(recordings, "m2"))
    with pytest.raises(ReplayMiss, match="model 'm2' to question '2'"):
        engine.generate([Request.user("a", "q", question_id="2")])
    with pytest.raises(BadInput, match="no question_id"):
        engine.generate([Request.user("a", "q")])


def test_a_question_of_another_benchmark_is_a_miss(recordings, replay_spec):
    """Ids of different benchmarks collide: item 2 of AIME is not item 2 of the recordings' MMLU-Pro."""
    engine = ReplayEngine(replay_spec(recordings, "m1", benchmark="mmlu_pro"))
    with pytest.raises(ReplayMiss, match="to aime question '2': its recordings are of mmlu_pro"):
        engine.generate([Request.user("a", "q", question_id="2", benchmark="aime")])
    asked = [Request.user("a", "q", question_id="2", benchmark="mmlu_pro"), Request.user("b", "q", question_id="2")]
    assert [g.text for g in engine.generate(asked)] == ["The answer is (C)."] * 2  # its own, or named by id alone


def test_unknown_model_and_file(recordings, replay_spec, tmp_path):
    with pytest.raises(NotFound, match="no records for model"):
        ReplayEngine(replay_spec(recordings, "m9")).load()
    with pytest.raises(NotFound, match="does not exist"):
        ReplayEngine(replay_spec(tmp_path / "none.jsonl", "m1")).load()


def test_malformed_line_names_file_and_line(tmp_path, replay_spec):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(BadInput, match=r"bad.jsonl:2"):
        ReplayBook(path).load(["m1"])


def test_book_optional_fields(recordings):
    book = ReplayBook(recordings)
    assert book.models() == ["m1", "m2"]
    assert book.get("m1", "1").correct == 1 and book.get("m2", "1").pred is None


@pytest.mark.data
def test_shared_recordings(replay_file, replay_spec):
    engine = ReplayEngine(replay_spec(replay_file, "Phi-3-mini-4k-instruct"))
    out = engine.generate([Request.user("x", "q", question_id="70")])
    assert out[0].text.strip()


def test_bad_files_are_one_line_errors(tmp_path):
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(b'{"model": "m1", "question_id": 1, "text": "x"}\n' * 50)[:40])
    with pytest.raises(BadInput, match="cut.jsonl.gz: cannot be read"):
        ReplayBook(truncated).load(["m1"])
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"model": "m1", "question_id": 1, "text": "x", "correct": "yes"}) + "\n")
    with pytest.raises(BadInput, match="odd.jsonl:1: 'correct' must be 0 or 1"):
        ReplayBook(odd).load(["m1"])
