"""The engine contract: load a model, generate a batch, unload, report the footprint.

Every engine converts its own failures into ``common.errors.EngineError`` subclasses.
``generate`` takes the whole batch at once so that engines with continuous batching
(vLLM) see every request together, and reports each request through ``on_result`` as soon
as it is finished, so a caller can checkpoint it before the batch ends. Engines that can
stream also report the text of each request as it is generated, through ``on_delta``: vLLM,
HTTP endpoints and the fake do; replay has nothing to stream and never calls it. A request
that asks for log-probabilities (``Request.logprobs``) gets their mean per generated token in
``Generation.logprob`` where the engine has them (vLLM, servers that return them, the fake's
stand-in); replay's recordings have none, so it leaves None.

Core binding is optional too (``Binder``): an engine that computes on this machine's CPU cores
can be moved to other cores between batches, so the executor gives a model more cores while it
generates alone and splits them while models generate side by side (vLLM on a CPU).

Sleep mode is optional (``Sleeper``): an engine that has it can park its loaded model, freeing
the accelerator's memory but for what the mode keeps, and wake it far faster than a load.
Only kinds whose registry entry says ``sleep`` (``batching.engines.kinds``) are asked to, and
only when the engine reports ``can_sleep`` at runtime (vLLM: once loaded, on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from batching.spec import ExpertSpec
from common.requests import Generation, Request

ResultCallback: TypeAlias = Callable[[int, Generation], None]
"""Called with (index of the request in the batch, its generation) as each request finishes,
in the thread that called ``generate``; an exception it raises ends the batch."""

DeltaCallback: TypeAlias = Callable[[int, str], None]
"""Called with (index of the request in the batch, the text generated since that request's
last delta), in the thread that called ``generate``, every delta of a request before its
``on_result``. None is empty; joined, a request's deltas are exactly its final
``Generation.text`` (a request that fails after some text was streamed comes back with
``error`` set instead). An exception it raises ends the batch."""


EngineFactory: TypeAlias = Callable[..., "Engine"]
"""Makes the engine of an expert: ``factory(spec)``, or ``factory(spec, cpus=(...))`` when the
executor gives co-resident local models disjoint CPU cores (only to a factory that takes them:
the SDK's own)."""


@runtime_checkable
class Engine(Protocol):
    spec: ExpertSpec

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None:
        """Make the model ready to generate (idempotent)."""

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """Answer every request; the list is complete and in request order.

        ``on_result(i, generation)`` is called once per request as soon as it is finished
        (in completion order, before ``generate`` returns). ``on_delta(i, text)``, if the
        engine can stream, as each request's text grows (see ``DeltaCallback``). Raises
        EngineError if the engine itself fails.
        """

    def unload(self) -> None:
        """Give back every resource the model holds (idempotent)."""

    def footprint_mb(self) -> float | None:
        """Memory the loaded model holds, measured if possible, else declared, else None."""


@runtime_checkable
class Sleeper(Protocol):
    """The optional sleep mode of an engine. A sleeping engine is still ``loaded`` (it holds its
    model, e.g. in host memory) but does not generate until woken."""

    @property
    def can_sleep(self) -> bool:
        """True when ``sleep()`` would park the model now (loaded, and the platform has the mode)."""

    @property
    def sleeping(self) -> bool: ...

    def sleep(self) -> bool:
        """Park the loaded model; True if it sleeps now, False if it cannot (it is left as it was).
        Raises EngineError if parking failed: the engine is then unusable, unload it."""

    def wake(self) -> None:
        """Make a sleeping model ready to generate again (nothing to do when awake). Raises
        EngineError if it failed: the engine is then unusable, unload it and load afresh."""


@runtime_checkable
class Binder(Protocol):
    """The optional core binding of an engine that computes on CPU cores."""

    cpus: tuple[int, ...] | None
    """The cores it computes on (None: every core this process may use)."""

    @property
    def can_bind(self) -> bool:
        """True when ``bind`` would move the loaded engine to other cores now."""

    def bind(self, cpus: tuple[int, ...]) -> bool:
        """Compute on ``cpus`` from the next batch on; False if it cannot be moved (it stays where
        it is). Raises EngineError if moving failed: when it is no longer loaded, unload it."""


def can_bind(engine: object) -> bool:
    """Whether ``engine`` reports that it can be moved to other cores now."""
    return getattr(engine, "can_bind", False) is True


def can_sleep(engine: object) -> bool:
    """Whether ``engine`` reports that it can sleep now (engines without the mode cannot)."""
    return getattr(engine, "can_sleep", False) is True


def asleep(engine: object) -> bool:
    """Whether ``engine`` sleeps now."""
    return getattr(engine, "sleeping", False) is True


def completion_prompt(request: Request, system_prompt: str | None = None) -> str:
    """Render a chat as a plain prompt for base models that have no chat template."""
    parts = []
    if system_prompt:
        parts.append(system_prompt.strip())
    for message in request.messages:
        if message.role == "system":
            parts.append(message.content.strip())
        elif message.role == "user":
            parts.append(f"Question: {message.content.strip()}")
        else:
            parts.append(f"Answer: {message.content.strip()}")
    parts.append("Answer:")
    return "\n\n".join(parts)


def chat_messages(request: Request, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The OpenAI-style message list, with the expert's system prompt first if it has one. When
    the request brings a system message of its own (a user's, in a conversation), the two are one
    system message: the expert's instructions, then the user's (chat templates take one, first)."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if not system_prompt:
        return messages
    if messages and messages[0]["role"] == "system":
        messages[0] = {"role": "system", "content": f"{system_prompt.strip()}\n\n{messages[0]['content']}"}
    else:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def mean_logprob(values: Iterable[float | None]) -> float | None:
    """The mean of per-token log-probabilities as ``Generation.logprob``: None when there are none
    or one is missing or not finite (the engine could not say), capped at 0 (a server's rounding
    may land just above)."""
    given = list(values)
    numbers = [float(v) for v in given if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if not numbers or len(numbers) != len(given):
        return None
    return min(0.0, math.fsum(numbers) / len(numbers))
