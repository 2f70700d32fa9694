"""API keys (hashing, key files, checks compared in constant time) and the per-key rate limit,
on a fake clock. Refused key files are a table: tests/data/api_key_files.toml."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest

from common.errors import ConfigError, RateLimited, Unauthorized
from orchestrator.service import security
from orchestrator.service.security import NO_LIMITS, ApiKeys, KeyLimits, RateLimiter, hash_key

BAD_FILES = tomllib.loads((Path(__file__).parent / "data" / "api_key_files.toml").read_text(encoding="utf-8"))["bad"]


def test_hash_key_is_sha256_hex():
    # the FIPS 180-2 test vector for "abc"
    assert hash_key("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("abd") != hash_key("abc")


def test_a_key_file_of_every_form(tmp_path):
    path = tmp_path / "keys"
    upper = hash_key("beta").upper()  # SHA256:ABC... is read as the same digest
    path.write_text(f"# team keys\n\n  alpha  \n{hash_key('gamma')}\n{upper}\n# {hash_key('delta')}\nalpha\n")
    keys = ApiKeys.from_file(path)
    assert len(keys) == 3  # alpha twice counts once; the commented-out key not at all
    for key in ("alpha", "beta", "gamma"):
        assert keys.check(key) == hash_key(key)[7:19]
    assert "alpha" not in repr(vars(keys)) and "alpha" not in repr(keys)
    for wrong in ("delta", "alpha ", "ALPHA", "", None):
        with pytest.raises(Unauthorized, match="^missing or wrong API key$"):
            keys.check(wrong)


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda c: c["name"])
def test_refused_key_files(tmp_path, case):
    path = tmp_path / "keys.txt"
    path.write_text(case["text"], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        ApiKeys.from_file(path)
    assert str(caught.value).startswith(f"{path}") or f"file {path} " in str(caught.value)
    assert case["message"] in str(caught.value)


def test_unreadable_key_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ApiKeys.from_file(tmp_path / "missing")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe key")
    with pytest.raises(ConfigError, match=f"API key file {binary} cannot be read"):
        ApiKeys.from_file(binary)


def test_keys_given_as_hashes():
    keys = ApiKeys([hash_key("one"), hash_key("two")])
    assert keys.check("two") == hash_key("two")[7:19]
    with pytest.raises(ConfigError, match="no API keys"):
        ApiKeys([])
    with pytest.raises(ConfigError, match="API key hash 1 is not"):
        ApiKeys([hash_key("one"), "one"])


def test_every_stored_hash_is_compared_in_constant_time(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def counting(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    names = [f"key-{i}" for i in range(5)]
    keys = ApiKeys(hash_key(n) for n in names)
    for presented in (names[0], names[4], "unknown"):
        compared.clear()
        try:
            keys.check(presented)
        except Unauthorized:
            assert presented == "unknown"
        assert len(compared) == 5  # no early exit on a match
        assert {b for _, b in compared} == {hash_key(n).encode() for n in names}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_refills_and_says_when_to_retry():
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.take("a")  # the full bucket at once
    with pytest.raises(RateLimited, match="^rate limit: 3 requests per minute per key$") as caught:
        limiter.take("a")
    assert caught.value.retry_after == pytest.approx(20.0)  # one request every 60/3 s
    clock.now += 5
    with pytest.raises(RateLimited) as caught:
        limiter.take("a")
    assert caught.value.retry_after == pytest.approx(15.0)
    clock.now += 15
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    clock.now += 3600  # a long rest refills the bucket, and no more than full
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_keys_are_limited_separately_and_idle_ones_forgotten():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    limiter.take("b")  # a's use is not b's
    assert len(limiter) == 2
    clock.now += 30
    limiter.take("c")
    assert len(limiter) == 3
    clock.now += 30  # a and b idle for a minute: full again, so forgotten
    limiter.take("d")
    assert len(limiter) == 2  # c and d
    limiter.take("a")  # a fresh, full bucket
    with pytest.raises(RateLimited):
        limiter.take("c")  # c's half-earned token is still remembered


def test_rate_limit_holds_across_threads():
    limiter = RateLimiter(100, clock=lambda: 5.0)
    allowed: list[int] = []

    def worker() -> None:
        for _ in range(50):
            try:
                limiter.take("shared")
                allowed.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 100


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_rate_limit_must_be_a_positive_whole_number(bad):
    with pytest.raises(ConfigError, match="rate limit must be a whole number"):
        RateLimiter(bad)


def test_a_key_line_carries_its_limits(tmp_path):
    path = tmp_path / "keys"
    digest = hash_key("beta")
    path.write_text(
        "# key   limits\n"
        "alpha   tokens_per_day=1000 cost_per_month=2.5 requests_per_minute=30\n"
        f"{digest} tokens_per_month=5000000\n"
        "gamma\n"
        "alpha   tokens_per_day=1000 cost_per_month=2.5 requests_per_minute=30\n"  # the same line again: one key
    )
    keys = ApiKeys.from_file(path)
    assert len(keys) == 3 and keys.rated
    alpha = keys.limits(keys.check("alpha"))
    assert alpha == KeyLimits(tokens_per_day=1000, cost_per_month=2.5, requests_per_minute=30)
    assert alpha.budgets == {"tokens_per_day": 1000, "cost_per_month": 2.5}  # the rate is not a budget
    assert keys.limits(keys.check("beta")).budgets == {"tokens_per_month": 5_000_000}
    assert keys.limits(keys.check("gamma")) == NO_LIMITS and NO_LIMITS.budgets == {}
    assert keys.limits(None) == NO_LIMITS and keys.limits("not-an-id") == NO_LIMITS
    assert not ApiKeys([hash_key("plain")]).rated


def test_a_key_of_its_own_rate_is_limited_by_it_and_the_others_by_the_service():
    clock = Clock()
    limiter = RateLimiter(None, clock=clock)
    for _ in range(10):
        limiter.take("key unlimited")  # no service-wide rate: only keys with their own are limited
    limiter.take("key a", 1)
    with pytest.raises(RateLimited, match="^rate limit: 1 requests per minute for this key$") as caught:
        limiter.take("key a", 1)
    assert caught.value.param == "requests_per_minute" and caught.value.retry_after == pytest.approx(60.0)
    shared = RateLimiter(2, clock=clock)
    shared.take("key b", 5)
    shared.take("key b", 5)
    shared.take("key b", 5)  # its own five, not the service's two
    shared.take("key c")
    shared.take("key c")
    with pytest.raises(RateLimited, match="per key$") as caught:
        shared.take("key c")
    assert caught.value.param == "rate_limit_per_minute"
