"""The messages between ``VLLMEngine`` (parent) and its worker child, over a multiprocessing pipe.

    parent -> child   Generate(jobs, stream) | Sleep(level) | Wake() | Stop()
    child -> parent   Ready(...) | Failed(kind, message)                 after start
                      Partial(texts) per engine step, if stream is set,
                      Finished(index, ...) per request, as each ends,
                      then BatchDone(count) | Failed(kind, message)      after Generate
                      Switched(sleeping) | Failed(SLEEP, message)        after Sleep or Wake

Plain frozen dataclasses of this project (pickled by the pipe), so both sides agree on the
fields and an error's kind is an enum member, not a class name in a string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from batching.spec import VLLMSource
from common.requests import Sampling


class ErrorKind(enum.Enum):
    NOT_FOUND = "not_found"  # the model reference names nothing that exists
    LOAD = "load"  # vLLM could not build the engine
    GENERATE = "generate"  # a batch failed; the engine is still usable
    ENGINE_DEAD = "engine_dead"  # vLLM's engine process died; the child exits non-zero
    SLEEP = "sleep"  # a sleep or wake failed; the parent stops the child


def describe(exc: BaseException) -> str:
    """An exception as one line for a ``Failed`` message."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]


@dataclass(frozen=True)
class WorkerConfig:
    """What the child needs to load one expert's model."""

    expert: str
    source: VLLMSource
    cache_dir: str
    seed: int
    chat_template: str | None
    cpus: tuple[int, ...] | None
    log_path: str
    parent_pid: int


@dataclass(frozen=True)
class Job:
    """One request of a batch: a plain prompt (completion mode) or OpenAI-style chat messages."""

    sampling: Sampling
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content)
    logprobs: bool = False  # report the mean log-probability of the generated tokens

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages or ()]


@dataclass(frozen=True)
class Generate:
    jobs: tuple[Job, ...]
    stream: bool = False  # send Partial messages as the texts grow


@dataclass(frozen=True)
class Partial:
    """The text one engine step added to the requests still running, as (index, new text) pairs.

    One message per step rather than per request: through the pipe a message costs about 17 us,
    a step's 32 pairs in one message about 31 us in all (measured here). A request's
    ``Finished.text`` may go on past what its Partials sent (the step that finished it, and text
    vLLM held back while it could still be the start of a stop string)."""

    texts: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Sleep:
    """Park the model: level 1 offloads the weights to host memory and drops the KV cache."""

    level: int = 1


@dataclass(frozen=True)
class Wake:
    pass


@dataclass(frozen=True)
class Switched:
    """The engine now sleeps (after Sleep) or is awake (after Wake)."""

    sleeping: bool


@dataclass(frozen=True)
class Ready:
    model: str
    device: str
    sleep_mode: bool = False  # started with vLLM's sleep mode (the platform has it)


@dataclass(frozen=True)
class Failed:
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class Finished:
    """One request's result, sent as soon as vLLM finished it (or screened it out)."""

    index: int
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None
    seconds: float = 0.0
    error: str | None = None
    logprob: float | None = None  # mean per generated token, if the job asked for logprobs


@dataclass(frozen=True)
class BatchDone:
    count: int


ToChild = Generate | Sleep | Wake | Stop
FromChild = Ready | Failed | Partial | Finished | BatchDone | Switched
