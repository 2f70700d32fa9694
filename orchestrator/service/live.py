"""What the live page (``/ui``) shows that ``/metrics`` does not keep: the recent requests (for
the request rate and latency percentiles over a window) and the recent answers with their traces.

Kept in memory, bounded (``keep_requests``, ``keep_answers``), per service process. An answer
is its asker's: with API keys a caller sees only the answers its key asked for (the rule jobs
follow, ``orchestrator.jobs.queue.visible``); without keys everyone sees every answer.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from common.errors import CoeError
from common.query import Query
from orchestrator.jobs.queue import visible
from orchestrator.pipeline.trace import Answer
from orchestrator.service.tickets import Ticket

log = logging.getLogger(__name__)

WINDOW_S = 300.0
"""The window of the latency percentiles and the error count (seconds)."""

RATE_WINDOWS_S = (10, 60)
"""The windows of the request rate (seconds)."""

ANSWERING = ("/v1/answer", "/v1/answer/batch", "/v1/chat/completions", "/ui/api/ask")
"""The routes whose latency is an answer's (the percentiles are theirs)."""

SHORT = 240
"""Characters of a question or an answer in the page's lists."""


@dataclass(frozen=True)
class Served:
    """One question the service settled: its answer (with its trace) or its error."""

    number: int
    at: float
    """When it was settled (seconds since the epoch)."""
    caller: str | None
    query: Query
    answer: Answer | None
    error: str | None
    seconds: float
    """From its arrival in the queue to its answer."""

    def summary(self) -> dict[str, Any]:
        """What the page's list of recent answers shows of it."""
        answer = self.answer
        trace = answer.trace if answer is not None else None
        return {
            "number": self.number,
            "at": self.at,
            "question_id": self.query.id,
            "question": _short(self.query.text),
            "text": _short(answer.text) if answer is not None else None,
            "choice": answer.choice if answer is not None else None,
            "policy": trace.policy if trace is not None else None,
            "experts": [e.expert for e in trace.experts] if trace is not None else [],
            "outcome": trace.outcome if trace is not None else None,
            "trace_id": trace.trace_id if trace is not None else None,
            "seconds": round(self.seconds, 3),
            "error": self.error or (answer.error if answer is not None else None),
        }

    def detail(self) -> dict[str, Any]:
        """The whole of it: the question, its options and the answer with its trace."""
        return {
            **self.summary(),
            "question": self.query.text,
            "options": list(self.query.options or ()),
            "answer": self.answer.model_dump(mode="json") if self.answer is not None else None,
        }


class Live:
    """The recent requests and answers of one service process. ``shown`` turns an error's
    message into what a client may see (the service's redactor)."""

    def __init__(
        self, shown: Callable[[str], str] = str, *, keep_requests: int = 20_000, keep_answers: int = 200
    ) -> None:
        self._shown = shown
        self._lock = threading.Lock()
        self._requests: deque[tuple[float, str, int, float]] = deque(maxlen=keep_requests)
        self._answers: deque[Served] = deque(maxlen=keep_answers)
        self._numbers = itertools.count(1)
        self._started = time.monotonic()
        self.keep_answers = keep_answers

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    # -- requests ---------------------------------------------------------------------------------

    def request(self, route: str, status: int, seconds: float) -> None:
        """One request answered (any status), ``seconds`` after it came."""
        with self._lock:
            self._requests.append((time.monotonic(), route, status, seconds))

    def traffic(self) -> dict[str, Any]:
        """Requests per second over each of ``RATE_WINDOWS_S``, and over ``WINDOW_S`` the
        answering routes' latency percentiles (milliseconds) and the errors."""
        now = time.monotonic()
        with self._lock:
            recent = [r for r in self._requests if r[0] >= now - WINDOW_S]
        rates = {f"per_second_{w}s": round(sum(1 for r in recent if r[0] >= now - w) / w, 3) for w in RATE_WINDOWS_S}
        answering = sorted(r[3] for r in recent if r[1] in ANSWERING and r[2] < 400)
        latency = {f"p{q}_ms": _quantile(answering, q / 100) for q in (50, 90, 99)}
        errors = sum(1 for r in recent if r[2] >= 400)
        return {**rates, "window_s": WINDOW_S, "answered": len(answering), "errors": errors, "latency": latency}

    # -- answers ----------------------------------------------------------------------------------

    def watch(self, tickets: Sequence[Ticket], caller: str | None) -> None:
        """Keep each ticket's answer (or error) once it is settled; a cancelled one is not kept."""
        for ticket in tickets:
            ticket.future.add_done_callback(partial(self._settled, ticket, caller))

    def _settled(self, ticket: Ticket, caller: str | None, future: Future[Answer]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        shown = None
        if error is not None:
            message = str(error) if isinstance(error, CoeError) else "internal error"
            shown = f"{type(error).__name__}: {self._shown(message)}"
        served = Served(
            number=next(self._numbers),
            at=time.time(),
            caller=caller,
            query=ticket.query,
            answer=future.result() if error is None else None,
            error=shown,
            seconds=time.monotonic() - ticket.arrived,
        )
        with self._lock:
            self._answers.append(served)

    def recent(self, caller: str | None, limit: int = 20) -> list[Served]:
        """The caller's latest answers, newest first."""
        with self._lock:
            answers = list(self._answers)
        return [s for s in reversed(answers) if visible(s.caller, caller)][:limit]

    def served(self, number: int, caller: str | None) -> Served | None:
        """One of the caller's recent answers by its number (None: unknown, gone, or another's)."""
        with self._lock:
            found = next((s for s in self._answers if s.number == number), None)
        return found if found is not None and visible(found.caller, caller) else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _quantile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted seconds, in milliseconds (None: nothing to measure)."""
    if not ordered:
        return None
    return round(1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


__all__ = ["ANSWERING", "Live", "Served"]
