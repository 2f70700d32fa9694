"""The SQLite run store: round trip, persistence, isolation by run, refusal of foreign files."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import pytest

from batching.runstore import RunStore, SQLiteRunStore
from common.requests import Generation
from common.errors import BadInput


def gen(request_id: str, text: str = "The answer is (A).", error: str | None = None) -> Generation:
    return Generation(request_id=request_id, model="m", text=text, tokens_in=3, tokens_out=5, error=error)


def test_round_trip_and_reopen(tmp_path):
    path = tmp_path / "runs" / "store.sqlite"
    with SQLiteRunStore(path) as store:
        assert isinstance(store, RunStore)
        store.put("r1", {"t1": gen("t1"), "t2": gen("t2", "two")})
        store.put("r2", {"t1": gen("t1", "other run")})
        assert store.finished_ids("r1") == {"t1", "t2"}
        got = store.get_many("r1", ["t2", "t1", "missing"])
        assert set(got) == {"t1", "t2"} and got["t2"].text == "two" and got["t1"].tokens_out == 5
    with SQLiteRunStore(path) as again:
        assert again.get_many("r2", ["t1"])["t1"].text == "other run"
        assert again.finished_ids("nothing") == set()
        assert again.runs() == ["r1", "r2"]
        assert set(again.finished_at("r1")) == {"t1", "t2"}


def test_failed_generations_are_not_stored(tmp_path):
    with SQLiteRunStore(tmp_path / "s.sqlite") as store:
        store.put("r", {"ok": gen("ok"), "bad": gen("bad", "", error="engine died")})
        assert store.finished_ids("r") == {"ok"}


def test_wal_mode_and_many_ids(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as store:
        store.put("r", {f"t{i}": gen(f"t{i}") for i in range(1200)})
        assert len(store.get_many("r", [f"t{i}" for i in range(0, 1200, 1)])) == 1200
    with closing(sqlite3.connect(path)) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_concurrent_puts_from_threads(tmp_path):
    with SQLiteRunStore(tmp_path / "s.sqlite") as store:

        def work(k: int) -> None:
            for i in range(20):
                store.put("r", {f"{k}-{i}": gen(f"{k}-{i}")})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.finished_ids("r")) == 80


def test_garbage_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    before = path.read_bytes()
    with pytest.raises(BadInput, match=r"store\.sqlite is unreadable or corrupt"):
        SQLiteRunStore(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(BadInput, match=r"not a run store \(tables: customers\)"):
        SQLiteRunStore(path)
    assert path.read_bytes() == before


def test_damaged_store_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as store:
        store.put("r", {f"t{i}": gen(f"t{i}", "x" * 2000) for i in range(50)})
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    raw = bytearray(path.read_bytes())
    raw[4096 * 2 : 4096 * 2 + 600] = b"\xff" * 600  # scribble over a page past the schema
    path.write_bytes(bytes(raw))
    with pytest.raises(BadInput, match="run store"), SQLiteRunStore(path) as store:
        store.get_many("r", [f"t{i}" for i in range(50)])


def test_directory_and_wrong_version(tmp_path):
    with pytest.raises(BadInput, match="is a directory"):
        SQLiteRunStore(tmp_path)
    path = tmp_path / "s.sqlite"
    SQLiteRunStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    db.commit()
    db.close()
    with pytest.raises(BadInput, match="has version '99'"):
        SQLiteRunStore(path)
