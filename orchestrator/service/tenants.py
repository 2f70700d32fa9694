"""Each API key's budgets and use: ``Tenants``.

A key's limits come from the key file (``security.KeyLimits``): tokens or cost per UTC day or
month. What a key spends is counted in the store (``stores.usage``: the SQLite file or the Redis
the service keeps its cache and jobs in), per day and per month, so budgets hold across
restarts and are shared by replicas. Before a request runs, its key's counts are read: a key
that has spent a budget is refused with ``BudgetExceeded`` (429) naming the limit and when its
window resets. The request that crosses a limit is answered and counted (its tokens are known
only afterwards); the next is refused. A reused answer (the semantic cache) costs no tokens but
counts as a request. The windows are read from ``clock`` (seconds since the epoch; tests move
it instead of waiting a day).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from common.errors import BudgetExceeded, CoeError
from orchestrator.pipeline.trace import Answer
from orchestrator.remote.wire import UsageReport, UsageWindow
from orchestrator.service.metrics import Metrics
from orchestrator.service.security import ApiKeys
from orchestrator.stores.usage import Spent, UsageStore

log = logging.getLogger(__name__)

PERIODS = ("day", "month")


def windows(now: float) -> dict[str, tuple[str, float, float]]:
    """period -> (window name, start, end) of the UTC day and month holding ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    following = month.replace(year=month.year + 1, month=1) if month.month == 12 else None
    next_month = following or month.replace(month=month.month + 1)
    return {
        "day": (f"day:{day:%Y-%m-%d}", day.timestamp(), day.timestamp() + 86_400),
        "month": (f"month:{month:%Y-%m}", month.timestamp(), next_month.timestamp()),
    }


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spent_on(answer: Answer) -> Spent:
    """What one answer cost its key: one request, and its tokens and cost unless it was reused."""
    if answer.trace.reused:
        return Spent(requests=1)
    tokens_in, tokens_out = answer.trace.tokens
    return Spent(requests=1, tokens_in=tokens_in, tokens_out=tokens_out, cost=answer.trace.cost)


class Tenants:
    """Budgets and use of the keys in ``keys``, counted in ``store``."""

    def __init__(
        self, keys: ApiKeys, store: UsageStore, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.store = store
        self.metrics = metrics
        self.clock = clock

    def check(self, key: str | None) -> None:
        """Raise ``BudgetExceeded`` when ``key`` has spent one of its budgets (the first found,
        the one that resets last when several are spent)."""
        budgets = self.keys.limits(key).budgets
        if key is None or not budgets:
            return
        now = self.clock()
        spans = windows(now)
        used = self.store.read(key, [name for name, _, _ in spans.values()])
        spent = []
        for limit, amount in budgets.items():
            what, period = limit.split("_per_")
            window, _, end = spans[period]
            value = used[window].tokens if what == "tokens" else used[window].cost
            if value >= amount:
                spent.append((end, limit, amount, value))
        if not spent:
            return
        end, limit, amount, value = max(spent)
        self.metrics.key_refused.labels(key, limit).inc()
        self.metrics.refused.labels("budget").inc()
        unit = "tokens" if limit.startswith("tokens") else "in cost"
        raise BudgetExceeded(
            f"budget exceeded: {limit} is {amount:g} {unit} and this key has spent {value:g}; it resets at {iso(end)}",
            retry_after=max(0.0, end - now),
            param=limit,
            resets_at=end,
        )

    def charge(self, key: str | None, answers: Sequence[Answer]) -> None:
        """Count ``answers`` against ``key`` (nothing for None: a service without keys). A store
        that cannot be written is logged: the answers were given."""
        if key is None or not answers:
            return
        total = Spent()
        for answer in answers:
            one = spent_on(answer)
            total = Spent(
                total.requests + one.requests,
                total.tokens_in + one.tokens_in,
                total.tokens_out + one.tokens_out,
                total.cost + one.cost,
            )
        m = self.metrics
        m.key_requests.labels(key).inc(total.requests)
        m.key_tokens.labels(key, "in").inc(total.tokens_in)
        m.key_tokens.labels(key, "out").inc(total.tokens_out)
        m.key_cost.labels(key).inc(total.cost)
        ends = {name: end for name, _, end in windows(self.clock()).values()}
        try:
            self.store.add(key, ends, total)
        except CoeError as exc:
            log.warning("key %s: %d request(s) not counted: %s", key, total.requests, exc)

    def report(self, key: str) -> UsageReport:
        """What ``key`` spent this UTC day and month, and its limits."""
        spans = windows(self.clock())
        used = self.store.read(key, [name for name, _, _ in spans.values()])
        shown = []
        for period in PERIODS:
            window, start, end = spans[period]
            spent = used[window]
            shown.append(
                UsageWindow(
                    period=period,
                    start=iso(start),
                    resets_at=iso(end),
                    requests=spent.requests,
                    tokens_in=spent.tokens_in,
                    tokens_out=spent.tokens_out,
                    tokens=spent.tokens,
                    cost=round(spent.cost, 9),
                )
            )
        limits = self.keys.limits(key)
        return UsageReport(key=key, limits=limits.model_dump(exclude_none=True), windows=shown)


__all__ = ["PERIODS", "Tenants", "iso", "spent_on", "windows"]
