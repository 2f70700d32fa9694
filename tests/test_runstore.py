"""The SQLite run store: round trip, persistence, isolation by run, refusal of foreign files."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import pytest

from batching.runstore import RunStore, SQLiteRunStore
from common.errors import BadInput
from common.requests import Generation


def gen(request_id: str, text: str = "The answer is (A).", error: str | None = None) -> Generation:
    return Generation(request_id=request_id, model="m", text=text, tokens_in=3, tokens_out=5, error=error)


def stored(store: SQLiteRunStore, run_id: str) -> set[str]:
    """The request keys a run has stored (read with SQL, beside the store's own API)."""
    with closing(sqlite3.connect(store.path)) as db:
        return {row[0] for row in db.execute("SELECT request_key FROM generations WHERE run_id = ?", (run_id,))}


def test_round_trip_and_reopen(tmp_path):
    path = tmp_path / "runs" / "store.sqlite"
    with SQLiteRunStore(path) as store:
        assert isinstance(store, RunStore)
        store.put("r1", {"t1": gen("t1"), "t2": gen("t2", "two")})
        store.put("r2", {"t1": gen("t1", "other run")})
        assert stored(store, "r1") == {"t1", "t2"}
        got = store.get_many("r1", ["t2", "t1", "missing"])
        assert set(got) == {"t1", "t2"} and got["t2"].text == "two" and got["t1"].tokens_out == 5
    with SQLiteRunStore(path) as again:
        assert again.get_many("r2", ["t1"])["t1"].text == "other run"
        assert stored(again, "nothing") == set()
        assert again.get_many("r1", ["t1"])["t1"].text == "The answer is (A)."  # runs stay apart
        assert stored(again, "r1") == {"t1", "t2"} and stored(again, "r2") == {"t1"}


def test_failed_generations_are_not_stored(tmp_path):
    with SQLiteRunStore(tmp_path / "s.sqlite") as store:
        store.put("r", {"ok": gen("ok"), "bad": gen("bad", "", error="engine died")})
        assert stored(store, "r") == {"ok"}


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
        assert len(stored(store, "r")) == 80


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


def test_request_key_names_a_benchmark_only_for_replay_and_only_when_set():
    from batching import ExpertSpec
    from batching.runstore import request_key
    from common.requests import Request

    replay = ExpertSpec(
        name="m1", source={"kind": "replay", "path": "/r.jsonl", "model": "m1", "benchmark": "mmlu_pro"}
    )
    live = ExpertSpec(name="m", source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"})
    ask = Request.user("t1", "What is 2+2?", question_id="q1")
    # a request without a benchmark keeps the key it had before requests named one
    assert request_key(replay, ask) == "93c85e6f76108f9657a1d734ccebad6ebac01d28057f64f743c2f19621a69a16"
    assert request_key(live, ask) == "ec85f52268018787f3580eb5fa4f1344fde049f4c7c72bffe07233a27c06d0fa"
    named = [ask.model_copy(update={"benchmark": b}) for b in ("mmlu_pro", "aime")]
    assert len({request_key(replay, r) for r in (ask, *named)}) == 3  # a recording is of one benchmark's item
    assert {request_key(live, r) for r in named} == {request_key(live, ask)}  # a live model reads the messages


def test_request_key_changes_with_what_was_asked():
    from batching import ExpertSpec
    from batching.runstore import request_key
    from common.requests import Request

    spec = ExpertSpec(name="m", source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"})
    ask = Request.user("t1", "What is 2+2?", question_id="q1")
    key = request_key(spec, ask)
    assert request_key(spec, Request.user("other-task-id", "What is 2+2?", question_id="q1")) == key
    changed = [
        request_key(spec, Request.user("t1", "What is 2+3?", question_id="q1")),  # prompt
        request_key(spec, Request.user("t1", "What is 2+2?", question_id="q2")),  # question (replay)
        request_key(spec, Request.user("t1", "What is 2+2?", question_id="q1", temperature=0.7)),  # sampling
        request_key(spec.model_copy(update={"system_prompt": "Be brief."}), ask),  # prompting
        request_key(ExpertSpec(name="m", source={"kind": "vllm", "model": "other/model"}), ask),  # model
    ]
    assert len({key, *changed}) == 6


def _whole_object_key(spec, request) -> str:
    """The definition ``request_key`` keeps: the SHA-256 of the whole object, dumped at once."""
    import hashlib
    import json

    from batching.engines.kinds import engine_kind

    asked: dict[str, object] = {
        "expert": spec.name,
        "source": spec.source.model_dump(mode="json", include=set(engine_kind(spec).deciding)),
        "prompt_mode": spec.prompt_mode,
        "chat_template": spec.chat_template,
        "system_prompt": spec.system_prompt,
        "messages": [m.model_dump(mode="json") for m in request.messages],
        "question_id": request.question_id,
        "sampling": request.sampling(spec.sampling).model_dump(mode="json"),
    }
    if request.logprobs:
        asked["logprobs"] = True
    if request.benchmark is not None and engine_kind(spec).recorded:
        asked["benchmark"] = request.benchmark
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def test_request_keys_of_a_batch_are_the_whole_object_digests():
    """``request_keys`` writes the JSON field by field (each expert's fields once): the same
    digests as dumping each whole object, across experts, samplings, texts and flags."""
    import itertools

    from batching import ExpertSpec
    from batching.runstore import request_key, request_keys
    from common.requests import Request

    specs = [
        ExpertSpec(name="m1", source={"kind": "replay", "path": "/r.jsonl", "model": "m1", "benchmark": "mmlu_pro"}),
        ExpertSpec(
            name="m2",
            source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct"},
            system_prompt='Be "brief"',
            sampling={"temperature": 0.7, "seed": 3, "stop": ["\n\n"]},
        ),
    ]
    texts = ["What is 2+2?", 'Quote "this" \\ and é \u4e2d\n{}', ""]
    asked = []
    for spec, text, qid, bench, seed, temperature, logprobs in itertools.product(
        specs, texts, [None, "q1"], [None, "mmlu_pro"], [None, 2], [None, 0.0], [False, True]
    ):
        request = Request.user(
            "t", text or " ", question_id=qid, benchmark=bench, seed=seed, temperature=temperature, logprobs=logprobs
        )
        asked.append((spec, request))
    keys = request_keys(asked)
    assert keys == [_whole_object_key(spec, request) for spec, request in asked]
    assert keys == [request_key(spec, request) for spec, request in asked]
    assert len(set(keys)) == 96  # half of these differ only where it decides nothing (benchmark of a live model...)
