"""The generation stores: one suite run on SQLite and on a real redis-server, then what is
particular to each (a foreign SQLite file; a Redis that goes away and comes back)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import closing
from pathlib import Path

import pytest

from batching.cache import GenerationCache
from common.errors import ConfigError, Unavailable
from common.requests import Generation
from orchestrator.pools.settings import load_settings
from orchestrator.stores import (
    GenerationStore,
    RedisGenerationStore,
    SQLiteGenerationStore,
    open_generation_store,
    store_kind,
)
from tests.redis_server import RedisServer, need_redis_server, redis_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
BAD = tomllib.loads((Path(__file__).parent / "data" / "store_bad_entries.toml").read_text())["case"]


def gen(request_id: str, text: str = "Thinking. The answer is (B).", error: str | None = None) -> Generation:
    return Generation(
        request_id=request_id, model="m", text=text, tokens_in=12, tokens_out=7, seconds=0.25, error=error
    )


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Backend:
    """One kind of store under test: how to open it, and how to write a raw value beside it."""

    def __init__(self, kind: str, target: str, server: RedisServer | None = None) -> None:
        self.kind = kind
        self.target = target
        self.server = server
        self.opened: list[GenerationStore] = []

    def open(self, ttl_s: float | None = None) -> GenerationStore:
        store = open_generation_store(self.target, ttl_s)
        self.opened.append(store)
        return store

    def write_raw(self, name: str, value: bytes | str) -> None:
        """Store ``value`` as it is under key ``name``, past the store's own encoding."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.target)) as db, db:
                db.execute("UPDATE entries SET entry = ? WHERE key = ?", (value, name))
                assert db.total_changes == 1
        else:
            import redis

            with closing(redis.Redis.from_url(self.target)) as client:
                client.set("coe:gen:" + name, value)

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        made = Backend("sqlite", str(tmp_path / "cache" / "store.sqlite"))
    else:
        server = request.getfixturevalue("redis_server")
        made = Backend("redis", server.url, server)
    yield made
    made.close()


# -- the shared suite ---------------------------------------------------------------------------


def test_round_trip_missing_keys_and_reopen(backend):
    store = backend.open()
    assert isinstance(store, GenerationStore) and isinstance(store, GenerationCache)
    store.put_many({key("a"): gen("a"), key("b"): gen("b", "Two.")})
    got = store.get_many([key("b"), key("missing"), key("a"), key("a")])
    assert set(got) == {key("a"), key("b")}
    assert got[key("a")] == gen("a") and got[key("b")].text == "Two."  # text, tokens and timings kept
    assert store.stats.snapshot() == {"hits": 2, "misses": 1, "bad_entries": 0, "written": 2}
    assert store.get_many([]) == {}
    again = backend.open()  # another process or replica sees the same entries
    assert again.get_many([key("a")]) == {key("a"): gen("a")}
    store.put_many({key("a"): gen("a", "Replaced.")})
    assert again.get_many([key("a")])[key("a")].text == "Replaced."
    store.ping()


def test_only_finished_generations_are_stored(backend):
    store = backend.open()
    store.put_many({key("ok"): gen("ok"), key("failed"): gen("failed", "", error="engine died")})
    assert set(store.get_many([key("ok"), key("failed")])) == {key("ok")}
    assert store.stats.written == 1
    store.put_many({key("failed"): gen("failed", "", error="again")})  # nothing to write: no call fails
    assert store.stats.written == 1


def test_many_keys_in_one_call(backend):
    store = backend.open()
    entries = {key(f"k{i}"): gen(f"k{i}", f"answer {i}") for i in range(1_234)}
    store.put_many(entries)
    got = store.get_many(list(entries))
    assert got == entries


def test_entries_expire_after_their_ttl(backend):
    store = backend.open(ttl_s=0.4)
    forever = backend.open()
    store.put_many({key("short"): gen("short")})
    forever.put_many({key("long"): gen("long")})
    assert set(store.get_many([key("short"), key("long")])) == {key("short"), key("long")}
    time.sleep(0.9)
    assert set(store.get_many([key("short"), key("long")])) == {key("long")}
    assert store.stats.bad_entries == 0  # expired is missing, not bad


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_a_bad_entry_is_skipped_logged_and_counted(backend, case, caplog):
    store = backend.open()
    store.put_many({key("bad"): gen("bad"), key("good"): gen("good")})
    payload = case.get("generation", gen("bad").model_dump_json())
    if "raw_hex" in case:
        value: bytes | str = bytes.fromhex(case["raw_hex"])
    else:
        value = (
            case["raw"]
            .replace("{KEY}", key("bad"))
            .replace("{OTHER}", key("good"))
            .replace("{DIGEST}", hashlib.sha256(payload.encode()).hexdigest())
            .replace("{GEN}", json.dumps(payload))
        )
        if "edit" in case:
            old, new = case["edit"]
            assert old in value
            value = value.replace(old, new)
    backend.write_raw(key("bad"), value)
    with caplog.at_level(logging.WARNING, logger="orchestrator.stores"):
        got = store.get_many([key("bad"), key("good")])
    assert got == {key("good"): gen("good")}
    assert store.stats.bad_entries == 1 and store.stats.hits == 1 and store.stats.misses == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and key("bad")[:16] in warnings[0] and "\n" not in warnings[0]


def test_an_entry_moved_to_another_key_is_not_returned(backend):
    """The value of one key copied under another (a store edited by hand, a bug elsewhere)."""
    store = backend.open()
    store.put_many({key("a"): gen("a", "A's answer."), key("b"): gen("b", "B's answer.")})
    if backend.kind == "sqlite":
        with closing(sqlite3.connect(backend.target)) as db:
            (value,) = db.execute("SELECT entry FROM entries WHERE key = ?", (key("a"),)).fetchone()
    else:
        import redis

        with closing(redis.Redis.from_url(backend.target)) as client:
            value = client.get("coe:gen:" + key("a"))
    backend.write_raw(key("b"), value)
    assert store.get_many([key("b")]) == {}
    assert store.stats.bad_entries == 1


_WRITER = """
import sys
from common.requests import Generation
from orchestrator.stores import open_generation_store

target, name = sys.argv[1], sys.argv[2]
store = open_generation_store(target)
for batch in range(40):
    entries = {f"{name}-{batch}-{i}": Generation(request_id=f"{batch}/{i}", model=name, text=f"{name} {batch} {i}")
               for i in range(5)}
    store.put_many(entries)
    assert store.get_many(list(entries)) == entries, "a writer could not read back what it wrote"
    store.get_many([f"{other}-{batch}-0" for other in ("one", "two")])
store.close()
"""


def test_two_processes_write_and_read_at_once(backend):
    """Two processes (two clients) open the same store at once and write and read in turns."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, backend.target, name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = backend.open()
    wanted = [f"{name}-{b}-{i}" for name in ("one", "two") for b in range(40) for i in range(5)]
    got = store.get_many(wanted)
    assert len(got) == 400 and got["two-39-4"].text == "two 39 4" and got["one-0-0"].model == "one"
    assert store.stats.bad_entries == 0


# -- SQLite ---------------------------------------------------------------------------------------


def test_sqlite_is_in_wal_mode_with_a_versioned_meta_table(tmp_path):
    path = tmp_path / "store.sqlite"
    with SQLiteGenerationStore(path) as store:
        store.put_many({key("a"): gen("a")})
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta == {"format": "symbolic-coe-generations", "version": "1"}


def _foreign_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE songs (title TEXT)")
        db.execute("INSERT INTO songs VALUES ('one')")


def _other_version(path: Path) -> None:
    with SQLiteGenerationStore(path):
        pass
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")


def _other_format(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', 'symbolic-coe-runstore'), ('version', '3')")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"plain text, not a database\n" * 40), "unreadable or corrupt"),
        (_foreign_sqlite, "not a generation store (tables: songs)"),
        (_other_format, "not a generation store (format 'symbolic-coe-runstore')"),
        (_other_version, "has version '99'; this code reads 1"),
    ],
    ids=["not-sqlite", "foreign-tables", "a-run-store", "newer-version"],
)
def test_a_file_that_is_not_this_store_is_refused_and_left_untouched(tmp_path, make, message):
    path = tmp_path / "store.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        SQLiteGenerationStore(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite"]


def test_a_directory_is_not_a_store_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        SQLiteGenerationStore(tmp_path)


def test_a_closed_sqlite_store_is_unavailable(tmp_path):
    store = SQLiteGenerationStore(tmp_path / "s.sqlite")
    store.close()
    for call in (store.ping, lambda: store.get_many([key("a")]), lambda: store.put_many({key("a"): gen("a")})):
        with pytest.raises(Unavailable, match=r"generation store .*s\.sqlite cannot be"):
            call()


def test_expired_entries_are_deleted_as_new_ones_are_written(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteGenerationStore(path, ttl_s=0.2) as store:
        store.put_many({key(f"old{i}"): gen("old") for i in range(5)})
        time.sleep(0.4)
        store.put_many({key("new"): gen("new")})
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 1


def test_max_entries_keeps_the_newest_and_files_made_before_it_get_its_index(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteGenerationStore(path) as unbounded:  # no bound: nothing is dropped
        unbounded.put_many({key(f"q{i}"): gen(f"q{i}") for i in range(3)})
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP INDEX entries_age")  # as a file made before the bound was
    with SQLiteGenerationStore(path, max_entries=4) as store:
        for i in range(3, 7):
            store.put_many({key(f"q{i}"): gen(f"q{i}")})
        found = store.get_many([key(f"q{i}") for i in range(7)])
    assert sorted(found) == sorted(key(f"q{i}") for i in range(3, 7))  # the 4 newest
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 4
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'entries_age'").fetchone()


def test_the_cache_is_bounded_and_expires_by_default(tmp_path):
    settings = load_settings(runs_dir=tmp_path)
    assert (settings.cache_ttl_s, settings.cache_max_entries) == (604_800, 100_000)
    with open_generation_store(settings.store_target, settings.cache_ttl_s, settings.cache_max_entries) as store:
        assert (store.ttl_s, store.max_entries) == (604_800, 100_000)
    for bad in (0, -3, True, 1.5):
        with pytest.raises(ConfigError, match="cache_max_entries must be a whole number"):
            SQLiteGenerationStore(tmp_path / "t.sqlite", max_entries=bad)


# -- Redis ----------------------------------------------------------------------------------------


def test_redis_down_is_unavailable_and_back_works_without_a_new_store(redis_server):  # noqa: F811
    store = RedisGenerationStore(redis_server.url, prefix="t:")
    store.put_many({key("a"): gen("a")})
    redis_server.stop()
    for call in (store.ping, lambda: store.get_many([key("a")]), lambda: store.put_many({key("b"): gen("b")})):
        with pytest.raises(Unavailable) as info:
            call()
        assert str(info.value).startswith(f"redis at {redis_server.url} is unreachable: ")
        assert isinstance(info.value.__cause__, Exception)
    redis_server.start()  # the same port; an empty Redis (nothing was saved)
    store.ping()
    assert store.get_many([key("a")]) == {}
    store.put_many({key("a"): gen("a")})
    assert store.get_many([key("a")]) == {key("a"): gen("a")}


def test_redis_entries_carry_the_prefix_and_expire_in_redis(redis_server):  # noqa: F811
    import redis

    store = RedisGenerationStore(redis_server.url, ttl_s=30, prefix="mine:")
    store.put_many({key("a"): gen("a")})
    with closing(redis.Redis.from_url(redis_server.url)) as client:
        assert client.keys("*") == [f"mine:{key('a')}".encode()]
        assert 0 < client.pttl(f"mine:{key('a')}") <= 30_000
    other = RedisGenerationStore(redis_server.url, prefix="theirs:")
    assert other.get_many([key("a")]) == {}  # prefixes keep stores apart


def test_a_password_in_the_url_is_never_shown():
    need_redis_server()
    with pytest.raises(Unavailable) as info:
        RedisGenerationStore("redis://user:hunter2@127.0.0.1:9/0", connect_timeout_s=0.5).ping()
    assert "hunter2" not in str(info.value) and "redis at redis://user:***@127.0.0.1:9/0" in str(info.value)
    assert "hunter2" not in repr(RedisGenerationStore("redis://:hunter2@127.0.0.1:9/0"))


# -- opening by setting ----------------------------------------------------------------------------


def test_open_generation_store_by_url_or_path(tmp_path):
    assert isinstance(open_generation_store("redis://127.0.0.1:9/2"), RedisGenerationStore)
    assert isinstance(open_generation_store("rediss://cache.example:6380"), RedisGenerationStore)
    made = open_generation_store(str(tmp_path / "a.sqlite"), ttl_s=5)
    assert isinstance(made, SQLiteGenerationStore) and made.ttl_s == 5
    assert isinstance(open_generation_store(tmp_path / "b.sqlite"), SQLiteGenerationStore)
    assert store_kind("relative/file.sqlite") == "sqlite"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://cache:6379", "scheme 'http' is not redis:// or rediss://"),
        ("redis://", "no host"),
        ("redis://cache:99999/0", "Port out of range"),
        ("redis://cache:6379/zero", "the database 'zero' is not a number"),
        ("redis://:pw@cache:port", "Port could not be cast"),
    ],
)
def test_a_bad_store_url_is_one_line(target, message):
    with pytest.raises(ConfigError) as info:
        open_generation_store(target)
    assert message in str(info.value) and "\n" not in str(info.value) and ":pw@" not in str(info.value)


def test_a_bad_ttl_is_refused(tmp_path):
    for bad in (0, -1.0, True):
        with pytest.raises(ConfigError, match="cache_ttl_s must be a positive number"):
            open_generation_store(tmp_path / "s.sqlite", bad)


def test_settings_read_store_cache_and_ttl_from_the_environment(monkeypatch, tmp_path):
    assert load_settings(runs_dir=tmp_path).store_target == tmp_path / "store.sqlite"
    monkeypatch.setenv("COE_STORE", "redis://cache:6379/1")
    monkeypatch.setenv("COE_CACHE", "refresh")
    monkeypatch.setenv("COE_CACHE_TTL_S", "3600")
    settings = load_settings()
    assert (settings.store_target, settings.cache, settings.cache_ttl_s) == ("redis://cache:6379/1", "refresh", 3600)
    assert load_settings(cache="off").cache == "off"
    monkeypatch.setenv("COE_STORE", "memcached://cache")
    with pytest.raises(ConfigError, match=r"^settings: store \(from COE_STORE\): .*scheme 'memcached'"):
        load_settings()
    monkeypatch.delenv("COE_STORE")
    monkeypatch.setenv("COE_CACHE", "sometimes")
    with pytest.raises(ConfigError, match=r"cache \(from COE_CACHE\)"):
        load_settings()
    with pytest.raises(ConfigError, match=r"cache_ttl_s"):
        load_settings(cache="use", cache_ttl_s=0)
