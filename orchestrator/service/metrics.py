"""What ``GET /metrics`` shows, with prometheus-client: one registry per app (tests run several).

Requests and errors by route and kind, refusals by reason, latency per route and per stage of an
answer, tokens, model loads and swaps (an unload to make room for another model), models
sleeping, requests waiting, the work each expert still has in the batch in flight, and the
generation cache's hits, misses and bad entries (read from the store's own counters when /metrics
is asked).
"""

from __future__ import annotations

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
            "limit, 429).",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "deadline", "rate_limit"):
            self.refused.labels(reason)  # shown as 0 before the first refusal
        self.cache = _CacheCounts()
        r.register(self.cache)


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
