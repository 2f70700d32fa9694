"""The body of a Ray actor that holds one engine (``batching.ray_executor``): it makes the engine
with the run's factory where the actor was placed, loads it, and answers a batch as a stream.

``generate`` runs the engine's own ``generate`` in a thread and yields, as they happen, lists of
events: ``("delta", i, text)``, ``("result", i, generation)``, and last ``("end", loaded,
error)`` with whether the engine is still loaded and the ``CoeError`` it raised, if it did. Each
yield carries every event that happened since the one before, so a fast engine (a replay)
sends its whole batch in a few messages and a slow one each result as it finishes. Errors the
engine raises travel as values, never as Ray's wrapped exceptions, so the driver sees the
project's own error, class and message.

The class imports no Ray and can be driven directly (the tests do).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from batching.engines.base import Engine, EngineFactory
from batching.spec import ExpertSpec
from common.errors import CoeError, EngineError
from common.requests import Generation, Request

__all__ = ["Event", "EngineHost", "where"]

log = logging.getLogger(__name__)

Event = tuple[str, Any, Any]
"""``("delta", index, text)``, ``("result", index, Generation)`` or ``("end", loaded, error)``."""


def where() -> dict[str, str]:
    """Where this process runs: its Ray node id (when inside Ray), host name and process id."""
    node = ""
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return {"node": node, "host": socket.gethostname(), "pid": str(os.getpid())}


class EngineHost:
    """One engine, made by ``factory(spec)`` in the process that hosts it."""

    def __init__(self, factory: EngineFactory, spec: ExpertSpec) -> None:
        self.factory = factory
        self.spec = spec
        self.engine: Engine | None = None

    def load(self) -> tuple[dict[str, str], CoeError | None]:
        """Make and load the engine; returns where it runs and the error if it could not load."""
        try:
            if self.engine is None:
                self.engine = self.factory(self.spec)
            self.engine.load()
        except CoeError as exc:
            return where(), exc
        except Exception as exc:  # noqa: BLE001 - a factory's own failure, reported as the engine's
            return where(), EngineError(f"could not load {self.spec.name!r}: {type(exc).__name__}: {exc}")
        log.info("%s loaded on %s", self.spec.name, where())
        return where(), None

    def loaded(self) -> bool:
        return self.engine is not None and self.engine.loaded

    def generate(self, requests: Sequence[Request], stream: bool = False) -> Iterator[list[Event]]:
        """Answer the batch; yields lists of events (see the module's docstring), the last one ending
        with ``("end", loaded, error)``."""
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        engine = self.engine
        if engine is None:
            yield [("end", False, EngineError(f"engine {self.spec.name!r} asked to generate before load()"))]
            return

        def work() -> None:
            reported: set[int] = set()

            def on_result(index: int, generation: Generation) -> None:
                reported.add(index)
                events.put(("result", index, generation))

            def on_delta(index: int, text: str) -> None:
                events.put(("delta", index, text))

            error: CoeError | None = None
            try:
                out = engine.generate(requests, on_result, on_delta if stream else None)
                for index, generation in enumerate(out):  # an engine that did not report one
                    if index not in reported:
                        events.put(("result", index, generation))
                if len(out) != len(requests):
                    error = EngineError(f"engine {self.spec.name!r} answered {len(out)} of {len(requests)} requests")
            except CoeError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - the engine's bug, reported as its failure
                error = EngineError(f"engine {self.spec.name!r} failed: {type(exc).__name__}: {exc}")
            events.put(("end", engine.loaded, error))

        threading.Thread(target=work, name=f"generate-{self.spec.name}", daemon=True).start()
        while True:
            batch = [events.get()]
            while True:
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            yield batch
            if batch[-1][0] == "end":
                return

    def unload(self) -> None:
        if self.engine is not None:
            self.engine.unload()

    def footprint_mb(self) -> float | None:
        return self.engine.footprint_mb() if self.engine is not None else None
