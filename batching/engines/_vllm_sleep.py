"""vLLM's sleep mode for ``VLLMEngine``, both ends of the pipe.

The child asks ``available()`` before it builds its engine (vLLM 0.32:
``current_platform.is_sleep_mode_available()``, true on CUDA, ROCm and XPU, false on the CPU
build); where it is, the engine starts with ``enable_sleep_mode=True`` and ``Ready.sleep_mode``
says so. ``switch`` then answers ``Sleep`` with ``LLM.sleep(level=1)`` (the weights go to host
memory, the KV cache is dropped) and ``Wake`` with ``LLM.wake_up()``.

The parent's side is ``SleepMode``, the part of ``VLLMEngine`` that sends them. Where the
engine was started without the mode it reports ``can_sleep`` False, and a warm session unloads
and loads it instead; the first engine of a process to find the mode missing says so in the log.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batching.engines._vllm_protocol import ErrorKind, Failed, FromChild, Ready, Sleep, Switched, Wake, describe
from batching.spec import ExpertSpec, VLLMSource
from common.errors import EngineError

logger = logging.getLogger("batching.engines.vllm_engine")  # a part of the engine: its log

_told: set[str] = set()  # devices on which the missing sleep mode was already reported


def available() -> bool:
    """Whether vLLM has its sleep mode on this platform (child side: imports vLLM)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def switch(llm: Any, command: Sleep | Wake, enabled: bool) -> Switched | Failed:
    """Put the child's engine to sleep or wake it; the reply to send to the parent."""
    if not enabled:
        return Failed(kind=ErrorKind.SLEEP, message="this engine was started without vLLM's sleep mode")
    try:
        if isinstance(command, Sleep):
            llm.sleep(level=command.level)
            return Switched(sleeping=True)
        if llm.wake_up() is False:  # vLLM 0.32 says whether every allocation is resident again
            return Failed(kind=ErrorKind.SLEEP, message="vLLM's wake_up left part of the engine asleep")
        return Switched(sleeping=False)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops this child
        traceback.print_exc()
        return Failed(kind=ErrorKind.SLEEP, message=describe(exc))


class SleepMode:
    """The sleep and wake of a ``VLLMEngine`` (``batching.engines.base.Sleeper``)."""

    spec: ExpertSpec
    source: VLLMSource
    log_path: Path | None
    switch_timeout_s: float
    _conn: Any
    _ready: Ready | None
    _sleeping: bool

    if TYPE_CHECKING:

        @property
        def loaded(self) -> bool: ...

        def _receive(self, timeout_s: float | None, what: str) -> FromChild: ...

        def _cleanup(self) -> None: ...

    @property
    def can_sleep(self) -> bool:
        """Loaded with vLLM's sleep mode (on a GPU); False on the CPU build."""
        return self.loaded and self._ready is not None and self._ready.sleep_mode

    @property
    def sleeping(self) -> bool:
        return self._sleeping and self.loaded

    def sleep(self) -> bool:
        """Park the model (vLLM's level 1); False where the engine has no sleep mode. EngineError
        if vLLM failed to: the child is stopped then."""
        if self.sleeping:
            return True
        if not self.can_sleep:
            return False
        self._switch(Sleep(level=1), sleeping=True)
        return True

    def wake(self) -> None:
        """Make the parked model ready again. EngineError if it did not wake: the child is stopped."""
        if not self._sleeping:
            return
        if not self.loaded:
            self._cleanup()
            raise EngineError(f"the vLLM child of {self.spec.name!r} died while asleep; log: {self.log_path}")
        self._switch(Wake(), sleeping=False)

    def _switch(self, command: Sleep | Wake, sleeping: bool) -> None:
        what = "sleep" if sleeping else "wake"
        started = time.monotonic()
        try:
            self._conn.send(command)
            reply = self._receive(self.switch_timeout_s, what)
        except (OSError, ValueError, EngineError) as exc:
            self._cleanup()
            raise EngineError(f"vLLM {what} of {self.spec.name!r} failed: {exc}; log: {self.log_path}") from exc
        if not isinstance(reply, Switched) or reply.sleeping is not sleeping:
            text = reply.message if isinstance(reply, Failed) else f"unexpected {type(reply).__name__}"
            self._cleanup()
            raise EngineError(f"vLLM {what} of {self.spec.name!r} failed: {text}; log: {self.log_path}")
        self._sleeping = sleeping
        logger.info("%s %s in %.1fs", self.spec.name, "sleeps" if sleeping else "woke", time.monotonic() - started)

    def _say_if_no_sleep_mode(self) -> None:
        """Once per process and device: the pool wants sleep mode and this platform has none."""
        ready = self._ready
        if ready is None or ready.sleep_mode or not self.source.sleep_mode or ready.device in _told:
            return
        _told.add(ready.device)
        logger.info(
            "vLLM has no sleep mode on %s: a model that must make room is unloaded and loaded again instead",
            ready.device,
        )
