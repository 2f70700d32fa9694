"""An honest fake engine for the fast test tier.

It answers from a function of the request (by default a deterministic letter derived from
the prompt), counts its loads and calls so tests can assert on them, and can be told to fail.
Asked to stream, it hands each answer out word by word (each word with the spaces after it),
so the deltas join to the exact text. Asked for log-probabilities (``Request.logprobs``), it
gives ``fake_logprob`` of the answer's text: a stable value in [-2, -0.05] from the text's hash.
Made with ``sleeps=True`` it has a sleep mode (``batching.engines.base.Sleeper``) whose wake can
be told to fail (``wake_fails``); it refuses to generate while asleep, as vLLM would.
It stands for a real engine in tests only; every behaviour it stands for is also tested
against vLLM and a live HTTP server in the real tier.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from batching.engines.base import DeltaCallback, ResultCallback
from batching.spec import ExpertSpec
from common.errors import EngineError
from common.requests import Generation, Request

LETTERS = "ABCDEFGHIJ"
_WORD_START = re.compile(r"(?<=\s)(?=\S)")  # where a word follows whitespace


def word_deltas(text: str) -> list[str]:
    """``text`` cut before each word (leading whitespace its own piece); joined, the pieces are
    ``text`` again, and none is empty."""
    return [piece for piece in _WORD_START.split(text) if piece]


def letter_answer(spec: ExpertSpec, request: Request) -> str:
    """A stable pseudo-answer: the letter the hash of (expert, prompt) lands on."""
    digest = hashlib.sha256(f"{spec.name}\n{request.text}".encode()).digest()
    return f"Thinking about it briefly. The answer is ({LETTERS[digest[0] % 4]})."


def fake_logprob(text: str) -> float:
    """A plausible, deterministic mean log-probability for ``text``: the first two bytes of its
    sha256 spread evenly over [-2.0, -0.05] (the range of a small model's greedy answers), so one
    text always gets one value and different texts usually different ones."""
    fraction = int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big") / 0xFFFF
    return round(-0.05 - 1.95 * fraction, 6)


class FakeEngine:
    def __init__(
        self,
        spec: ExpertSpec,
        answer: Callable[[ExpertSpec, Request], str] = letter_answer,
        fail_on: Callable[[Request], bool] | None = None,
        memory_mb: float = 100.0,
        *,
        sleeps: bool = False,
        wake_fails: bool = False,
    ) -> None:
        self.spec = spec
        self._answer = answer
        self._fail_on = fail_on
        self._memory_mb = spec.memory_mb or memory_mb
        self._loaded = False
        self._sleeps = sleeps
        self._sleeping = False
        self.wake_fails = wake_fails
        """The next wakes raise EngineError (the engine must then be unloaded)."""
        self.loads = 0
        self.unloads = 0
        self.sleeps = 0
        self.wakes = 0
        self.batches: list[list[str]] = []

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def can_sleep(self) -> bool:
        return self._sleeps and self._loaded

    @property
    def sleeping(self) -> bool:
        return self._sleeping

    def sleep(self) -> bool:
        if self._sleeping:
            return True
        if not self.can_sleep:
            return False
        self._sleeping = True
        self.sleeps += 1
        return True

    def wake(self) -> None:
        if not self._sleeping:
            return
        if self.wake_fails:
            raise EngineError(f"engine {self.spec.name!r} could not wake")
        self._sleeping = False
        self.wakes += 1

    def load(self) -> None:
        if not self._loaded:
            self._loaded = True
            self.loads += 1

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """Answers in order, streaming each word by word through ``on_delta`` and reporting it
        through ``on_result`` before the next is made; a request ``fail_on`` picks raises
        EngineError after the earlier ones were reported."""
        if not self._loaded:
            raise EngineError(f"engine {self.spec.name!r} asked to generate before load()")
        if self._sleeping:
            raise EngineError(f"engine {self.spec.name!r} asked to generate while asleep; wake() it first")
        self.batches.append([r.id for r in requests])
        out = []
        for i, request in enumerate(requests):
            if self._fail_on is not None and self._fail_on(request):
                raise EngineError(f"engine {self.spec.name!r} failed on request {request.id!r}")
            text = self._answer(self.spec, request)
            generation = Generation(
                request_id=request.id,
                model=self.spec.name,
                text=text,
                tokens_in=len(request.text.split()),
                tokens_out=len(text.split()),
                finish_reason="stop",
                logprob=fake_logprob(text) if request.logprobs else None,
            )
            out.append(generation)
            if on_delta is not None:
                for piece in word_deltas(text):
                    on_delta(i, piece)
            if on_result is not None:
                on_result(i, generation)
        return out

    def unload(self) -> None:
        self._sleeping = False
        if self._loaded:
            self._loaded = False
            self.unloads += 1

    def footprint_mb(self) -> float | None:
        return self._memory_mb
