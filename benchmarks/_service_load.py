"""``coe serve`` at and over its capacity, and its memory under distinct questions (the parts of
``benchmarks/service.py`` added with admission control; every request goes to 127.0.0.1).

- ``concurrent_part``: new questions asked in batches (what the service answers a second when
  every question is new to its encoder), then as many single requests at once, within the
  queue's bound: every one answered.
- ``overload_part``: a steady stream of new questions at about twice what the service answers a
  second, from two API keys with a per-key rate limit: the heavy key is refused with 429 over its
  limit, what is admitted beyond capacity with 503 (a full queue or a deadline passed), and the
  answered requests' p99 stays bounded by the deadline.
- ``memory_part``: the resident memory of the service's process over many distinct questions,
  sampled as they go; after the warm-up it must stay within 10%.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from _served import Served, at_rate, mmlu_questions, quantile

ASKED = {"policy": "topk", "k": 3, "aggregation": "majority"}
REPLAY = ("--pool", str(Path(__file__).resolve().parents[1] / "pools" / "replay-small"))
VOTES_ONLY = ("--memory-budget-mb", "1000")
"""The recorded experts take no memory; the vLLM aggregator (unused by votes) is not kept warm."""


def fresh(folder: str) -> dict[str, str]:
    """The environment of a service with empty caches in ``folder``: no question's embedding or
    generation is known to it."""
    return {"COE_CACHE_DIR": str(Path(folder) / "cache"), "COE_RUNS_DIR": str(Path(folder) / "runs")}


def concurrent_part(served: Served, n: int, offset: int) -> dict:
    """``n`` new questions to ``served`` in batch requests of 250, one after another (timed: the
    rate of new questions), then the same ``n`` as single requests all at once."""
    questions = mmlu_questions(n, offset)
    started = time.perf_counter()
    why: Counter[str] = Counter()
    unanswered = asyncio.run(_batches(served.url, [questions[i : i + 250] for i in range(0, n, 250)], 1, why))
    new_per_s = n / (time.perf_counter() - started)
    bodies = [({**q, **ASKED}, served.headers) for q in questions]
    started = time.perf_counter()
    replies = asyncio.run(at_rate(served.url, bodies, 0.0))
    wall = time.perf_counter() - started
    seconds = [s for status, s in replies if status == 200]
    return {
        "new_questions_per_s": round(new_per_s, 1),
        "new_questions_unanswered": unanswered,
        "new_questions_unanswered_why": dict(why.most_common(5)),
        "requests": n,
        "errors": sum(1 for status, _ in replies if status != 200),
        "wall_s": round(wall, 1),
        "answered_per_s": round(len(seconds) / wall, 1),
        "p50_s": round(quantile(seconds, 0.5), 2),
        "p99_s": round(quantile(seconds, 0.99), 2),
    }


def overload_part(capacity: float, seconds: float, offset: int, *, max_queue: int, timeout_s: float) -> dict:
    """New questions (to a service with empty caches) at ``2 * capacity`` a second for ``seconds``:
    three quarters from a heavy key, a quarter from a light one, each key allowed ``capacity / 2``
    a second (a minute's worth at once, as the token bucket starts full)."""
    per_minute = max(1, round(30 * capacity))
    rate = 2 * capacity
    n = round(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.txt"
        keys.write_text("heavy-key\nlight-key\n")
        served = Served(
            *REPLAY,
            *VOTES_ONLY,
            "--api-keys",
            str(keys),
            "--rate-limit",
            str(per_minute),
            "--max-queue",
            str(max_queue),
            "--queue-timeout-s",
            str(timeout_s),
            key="heavy-key",
            env=fresh(tmp),
        )
        try:
            heavy, light = {"Authorization": "Bearer heavy-key"}, {"Authorization": "Bearer light-key"}
            questions = mmlu_questions(n, offset)
            bodies = [({**q, **ASKED}, light if i % 4 == 3 else heavy) for i, q in enumerate(questions)]
            started = time.perf_counter()
            replies = asyncio.run(at_rate(served.url, bodies, 1 / rate))
            wall = time.perf_counter() - started
            refused = {r: served.metric(f'coe_refused_total{{reason="{r}"}}') for r in ("queue_full", "deadline")}
            refused["rate_limit"] = served.metric('coe_refused_total{reason="rate_limit"}')
        finally:
            served.stop()
    answered = [s for status, s in replies if status == 200]
    statuses: dict[str, int] = {}
    for status, _ in replies:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "offered_per_s": round(rate, 1),
        "seconds": seconds,
        "requests": n,
        "statuses": dict(sorted(statuses.items())),
        "refused_by_reason": {k: int(v) for k, v in refused.items()},
        "answered_per_s": round(len(answered) / wall, 1),
        "answered_p50_s": round(quantile(answered, 0.5), 2),
        "answered_p99_s": round(quantile(answered, 0.99), 2),
        "answered_max_s": round(max(answered, default=float("nan")), 2),
        "refused_p99_s": round(quantile([s for status, s in replies if status in (429, 503)], 0.99), 3),
        "settings": f"--max-queue {max_queue} --queue-timeout-s {timeout_s:g} --rate-limit {per_minute} per key",
        "wall_s": round(wall, 1),
    }


def memory_part(n: int, every: int, warm: int, batch: int = 64, at_once: int = 4) -> dict:
    """``n`` distinct questions to a fresh service (empty generation and embedding caches: every
    question is embedded and generated anew), in batch requests of ``batch``, ``at_once`` at a
    time; the RSS every ``every`` questions, at rest (a second after they were answered). Flat: at
    most 10% over its value after ``warm``."""
    with tempfile.TemporaryDirectory() as tmp:
        served = Served(*REPLAY, *VOTES_ONLY, env=fresh(tmp))
        samples: list[tuple[int, float]] = [(0, round(served.rss_mb(), 1))]
        errors = 0
        why: Counter[str] = Counter()
        started = time.perf_counter()
        try:
            for start in range(0, n, every):
                chunk = mmlu_questions(min(every, n - start), start)
                groups = [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
                errors += asyncio.run(_batches(served.url, groups, at_once, why))
                time.sleep(1.0)  # at rest: the service gives freed memory back once idle (0.25 s)
                samples.append((start + len(chunk), round(served.rss_mb(), 1)))
                print(f"memory: {samples[-1][0]} questions, RSS {samples[-1][1]} MB", flush=True)
        finally:
            served.stop()
    wall = time.perf_counter() - started
    after_warm = next(rss for done, rss in samples if done >= warm)
    later = [rss for done, rss in samples if done > warm]
    return {
        "questions": n,
        "unanswered": errors,
        "unanswered_why": dict(why.most_common(5)),
        "rss_mb": dict(samples),
        "rss_after_warmup_mb": after_warm,
        "rss_max_after_warmup_mb": max(later),
        "rss_final_mb": samples[-1][1],
        "growth_after_warmup_pct": round(100 * (max(later) - after_warm) / after_warm, 1),
        "warmup_questions": warm,
        "answered_per_s": round(n / wall, 1),
        "wall_s": round(wall, 1),
    }


async def _batches(url: str, groups: list[list[dict]], at_once: int, why: Counter[str] | None = None) -> int:
    """POST each group to /v1/answer/batch, ``at_once`` at a time; the questions not answered
    (their reasons counted in ``why``: the reply's status, or the answer's error)."""
    gate = asyncio.Semaphore(at_once)
    why = why if why is not None else Counter()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(group: list[dict]) -> int:
            async with gate:
                reply = await client.post("/v1/answer/batch", json={"questions": group, **ASKED})
            if reply.status_code != 200:
                why[f"HTTP {reply.status_code}"] += len(group)
                return len(group)
            errors = [a["error"] for a in reply.json()["answers"] if a.get("error")]
            why.update(" ".join(e.split())[:160] for e in errors)
            return len(errors)

        return sum(await asyncio.gather(*(one(g) for g in groups)))
