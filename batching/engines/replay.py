"""Replay engine: answers recorded earlier from real models on one benchmark, keyed by model
and question id (the recordings themselves are read by ``common.recordings``). Nothing is made
up: a request whose (model, question id) was never recorded, or that asks an item of another
benchmark than the source's, raises ``ReplayMiss``. A recording has nothing to stream:
``generate`` takes ``on_delta`` for the contract's sake and never calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from batching.engines.base import DeltaCallback, ResultCallback
from batching.spec import ExpertSpec, ReplaySource
from common.errors import BadInput, ReplayMiss
from common.recordings import ReplayBook, replay_book
from common.requests import Generation, Request


class ReplayEngine:
    """An engine whose answers are the recorded ones; needs ``question_id`` on every request.
    A request with a ``benchmark`` is answered only when it is the source's; one without is
    looked up by its id alone (a question of no benchmark, e.g. one asked by its id)."""

    def __init__(self, spec: ExpertSpec) -> None:
        if not isinstance(spec.source, ReplaySource):
            raise BadInput(f"expert {spec.name!r} is not a replay expert")
        self.spec = spec
        self._source: ReplaySource = spec.source
        self._book: ReplayBook | None = None

    @property
    def loaded(self) -> bool:
        return self._book is not None

    def load(self) -> None:
        if self._book is None:
            book = replay_book(self._source.path)
            book.load([self._source.model])
            self._book = book

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """The recorded answers in order, each reported through ``on_result`` as it is looked up
        (no deltas: ``on_delta`` is never called)."""
        self.load()
        assert self._book is not None
        out = []
        for i, request in enumerate(requests):
            if request.question_id is None:
                raise BadInput(f"request {request.id!r} has no question_id; a replay expert needs one")
            if request.benchmark is not None and request.benchmark != self._source.benchmark:
                raise ReplayMiss(
                    f"no recorded answer of model {self._source.model!r} to {request.benchmark} question "
                    f"{request.question_id!r}: its recordings are of {self._source.benchmark}"
                )
            record = self._book.get(self._source.model, request.question_id)
            generation = Generation(
                request_id=request.id,
                model=self.spec.name,
                text=record.text,
                tokens_in=len(request.text.split()),
                tokens_out=len(record.text.split()),
                finish_reason="replay",
                answer=record.pred,
            )
            out.append(generation)
            if on_result is not None:
                on_result(i, generation)
        return out

    def unload(self) -> None:
        self._book = None

    def footprint_mb(self) -> float | None:
        return self.spec.memory_mb or 0.0


def index_recordings(specs: Iterable[ExpertSpec]) -> None:
    """Index the recordings of the recorded experts among ``specs`` in one pass per file (each
    replay engine's ``load`` would otherwise read the whole file for its own model)."""
    by_file: dict[Path, list[str]] = {}
    for spec in specs:
        if isinstance(spec.source, ReplaySource):
            by_file.setdefault(Path(spec.source.path), []).append(spec.source.model)
    for path, models in by_file.items():
        replay_book(path).load(models)
