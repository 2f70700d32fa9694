"""What ``GET /metrics`` shows, with prometheus-client: one registry per app (tests run several).

Requests and errors by route and kind, refusals by reason, latency per route and per stage of an
answer, tokens, model loads and swaps (an unload to make room for another model), models
sleeping, requests waiting, the work each expert still has in the batch in flight, and the
generation cache's hits, misses and bad entries (read from the store's own counters when /metrics
is asked); per API key (by its id, a hash, never the key) the requests, tokens and cost it spent
and the requests its budgets refused; the semantic cache's lookups by outcome, their time, and
its hit rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The service's instruments, registered in their own ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coe_requests", "HTTP requests answered.", ["route", "status"], registry=r)
        self.latency = Histogram(
            "coe_request_seconds", "Time to answer an HTTP request.", ["route"], buckets=_LATENCY, registry=r
        )
        self.stage = Histogram(
            "coe_stage_seconds",
            "Seconds per stage of an answer: queue (waiting for its batch), route, load, experts, aggregate.",
            ["stage"],
            buckets=_LATENCY,
            registry=r,
        )
        self.errors = Counter("coe_errors", "Errors returned, by error type.", ["type"], registry=r)
        self.tokens = Counter("coe_tokens", "Tokens read and written, by role.", ["role", "direction"], registry=r)
        self.loads = Counter("coe_model_loads", "Models loaded.", ["model"], registry=r)
        self.swaps = Counter(
            "coe_model_swaps", "Models unloaded to make room for another while serving.", ["model"], registry=r
        )
        self.loaded = Gauge("coe_models_loaded", "Models loaded now (sleeping ones included).", registry=r)
        self.sleeping = Gauge(
            "coe_models_sleeping", "Models parked in sleep mode now: woken instead of loaded.", registry=r
        )
        self.queue = Gauge("coe_queue_depth", "Requests waiting for a batch.", registry=r)
        self.expert_queue = Gauge(
            "coe_expert_queue_depth", "Generations each expert still owes the batch in flight.", ["expert"], registry=r
        )
        self.batches = Counter("coe_batches", "Batches run.", registry=r)
        self.aggregations = Counter(
            "coe_aggregations",
            "Answers by how they were combined: the aggregator called, skipped (the experts agreed), or a vote.",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "coe_batch_questions",
            "Questions per batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.cancelled = Counter("coe_cancelled", "Requests whose client went away before the answer.", registry=r)
        self.refused = Counter(
            "coe_refused",
            "Refused before running, by reason: queue_full (a request the queue had no room for, 503), "
            "deadline (a question that waited past queue_timeout_s, 503), rate_limit (a request over its key's "
            "limit, 429), budget (a key that has spent a budget, 429).",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "deadline", "rate_limit", "budget"):
            self.refused.labels(reason)  # shown as 0 before the first refusal
        self.cache = _CacheCounts()
        r.register(self.cache)
        self.key_requests = Counter(
            "coe_key_requests", "Requests answered per API key (by its id, a hash of the key).", ["key"], registry=r
        )
        self.key_tokens = Counter(
            "coe_key_tokens", "Tokens spent per API key, read (in) and written (out).", ["key", "direction"], registry=r
        )
        self.key_cost = Counter("coe_key_cost", "Cost spent per API key, in the pool's unit.", ["key"], registry=r)
        self.key_refused = Counter(
            "coe_key_budget_refusals",
            "Requests refused because a key had spent a budget, by the limit.",
            ["key", "limit"],
            registry=r,
        )
        self.semantic = Counter(
            "coe_semantic_cache_lookups",
            "Questions the semantic cache was asked about, by outcome: hit, miss, refused (the request said no).",
            ["outcome"],
            registry=r,
        )
        self.semantic_seconds = Histogram(
            "coe_semantic_cache_lookup_seconds",
            "Seconds a lookup in the semantic cache took (the embedding included), per request.",
            buckets=_LATENCY,
            registry=r,
        )
        self._looked = {"hit": 0, "miss": 0}
        self._looked_lock = threading.Lock()
        self.semantic_hit_rate = Gauge(
            "coe_semantic_cache_hit_rate", "The semantic cache's hits over hits and misses since the start.", registry=r
        )
        self.semantic_hit_rate.set_function(self._hit_rate)

    def looked_up(self, outcome: str, count: int = 1) -> None:
        """Count ``count`` semantic cache lookups of one outcome."""
        self.semantic.labels(outcome).inc(count)
        with self._looked_lock:
            if outcome in self._looked:
                self._looked[outcome] += count

    def _hit_rate(self) -> float:
        with self._looked_lock:
            asked = self._looked["hit"] + self._looked["miss"]
            return self._looked["hit"] / asked if asked else 0.0


_CACHE_COUNTS = (
    ("hits", "Generations answered from the cache (no load, no engine call)."),
    ("misses", "Generations looked up in the cache and not found."),
    ("bad_entries", "Cache entries ignored: unreadable, or not matching their key or digest."),
)


class _CacheCounts(Collector):
    """``coe_cache_{hits,misses,bad_entries}_total``, read from ``source`` (the store's counters)
    at each scrape; zero while no store is open."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self.source() if self.source is not None else {}
        for name, help_text in _CACHE_COUNTS:
            yield CounterMetricFamily(f"coe_cache_{name}", help_text, value=counts.get(name, 0))

    def describe(self) -> Iterator[CounterMetricFamily]:
        for name, help_text in _CACHE_COUNTS:
            yield CounterMetricFamily(f"coe_cache_{name}", help_text)


__all__ = ["Metrics"]
