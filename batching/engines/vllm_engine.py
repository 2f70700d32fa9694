"""vLLM offline engine: one child process per loaded model, so unloading gives all memory back.

The parent never imports vLLM or torch. ``load`` spawns the child
(``batching.engines._vllm_worker.serve``), which converts a packaged model if needed, builds
``vllm.LLM`` and answers ``Ready``; ``generate`` sends the whole batch in one message and
receives one ``Finished`` message per request as vLLM finishes it; ``unload`` asks the child
to stop and kills its process group if it does not. The messages are the typed records of
``_vllm_protocol``.

The child leads its own process group, which holds vLLM's engine and worker processes too;
it kills that group when this process dies, and this process kills it when the child dies.

On a GPU the engine starts with vLLM's sleep mode and can be parked and woken (``sleep``,
``wake``: ``_vllm_sleep``); on the CPU build ``can_sleep`` is False.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from batching.engines._orphans import wait_group_gone
from batching.engines._vllm_protocol import (
    BatchDone,
    ErrorKind,
    Failed,
    Finished,
    FromChild,
    Generate,
    Job,
    Partial,
    Ready,
    Stop,
    WorkerConfig,
)
from batching.engines._vllm_sleep import SleepMode
from batching.engines.base import DeltaCallback, ResultCallback, chat_messages, completion_prompt
from batching.models import check_ref
from batching.spec import ExpertSpec, VLLMSource
from common.errors import EngineError, EngineLoadError, EngineTimeout, NotFound
from common.requests import Generation, Request

__all__ = ["VLLMEngine"]

logger = logging.getLogger(__name__)

_POLL_S = 0.2
_ERROR_LINE = re.compile(r"\b[A-Z]\w*(Error|Exception|Exit)\b: |^coe error: ")  # vLLM's, or the child's own
_VLLM_PREFIX = re.compile(r"^(\(\w+ pid=\d+\) )?(ERROR|WARNING|INFO) \d\d-\d\d [\d:]+ \[[^\]]*\] ")


class VLLMEngine(SleepMode):
    """Serves one ``ExpertSpec`` whose source is a ``VLLMSource``, from a child process.

    ``cpus``: on the CPU build, the cores this engine's model worker is bound to (give
    co-resident engines disjoint sets); None means every core this process may use.
    """

    def __init__(
        self,
        spec: ExpertSpec,
        cache_dir: Path,
        *,
        cpus: tuple[int, ...] | None = None,
        load_timeout_s: float = 900.0,
        generate_timeout_s: float | None = None,
        stop_timeout_s: float = 30.0,
        switch_timeout_s: float = 300.0,
    ) -> None:
        if not isinstance(spec.source, VLLMSource):
            raise EngineLoadError(f"expert {spec.name!r} is not a vllm source (kind={spec.source.kind!r})")
        if cpus is not None and not cpus:
            raise EngineLoadError(f"expert {spec.name!r}: cpus is empty; give at least one core or None for all")
        self.spec = spec
        self.source: VLLMSource = spec.source
        self.cache_dir = Path(cache_dir)
        self.cpus = tuple(cpus) if cpus is not None else None
        self.load_timeout_s = load_timeout_s
        self.generate_timeout_s = generate_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.switch_timeout_s = switch_timeout_s  # the most a sleep or a wake may take
        self._sleeping = False
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None
        self._ready: Ready | None = None
        self.log_path: Path | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id while loaded (also the id of its process group)."""
        return self._process.pid if self._process is not None else None

    @property
    def device(self) -> str | None:
        return self._ready.device if self._ready is not None else None

    def footprint_mb(self) -> float | None:
        """Resident memory of the child and its descendants when loaded, else the declared size."""
        if self.loaded and self.pid is not None:
            import psutil

            try:
                root = psutil.Process(self.pid)
                total = 0
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                return total / 2**20
            except psutil.NoSuchProcess:
                pass
        return self.spec.memory_mb

    # -- life cycle ---------------------------------------------------------------------------

    def load(self) -> None:
        if self.loaded:
            return
        self._cleanup()  # a child that crashed earlier: reap its group before starting a new one
        check_ref(self.source.model)
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"vllm-{self.spec.name}-{os.getpid()}-{time.time_ns()}.log"
        config = WorkerConfig(
            expert=self.spec.name,
            source=self.source,
            cache_dir=str(self.cache_dir),
            seed=self.spec.sampling.seed or 0,
            chat_template=self.spec.chat_template,
            cpus=self.cpus,
            log_path=str(self.log_path),
            parent_pid=os.getpid(),
        )
        from batching.engines._vllm_worker import serve

        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe()
        # not a daemon: vLLM starts its own engine process, which daemons may not do
        process = context.Process(target=serve, args=(child_conn, config), name=f"vllm-{self.spec.name}")
        started = time.monotonic()
        logger.info("loading %s (%s) in a vLLM child process", self.spec.name, self.source.model)
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        try:
            message = self._receive(self.load_timeout_s, "load")
        except EngineTimeout as exc:
            self._cleanup()
            raise EngineLoadError(f"{exc}; log: {self.log_path}") from exc
        except EngineError as exc:
            self._cleanup()
            raise EngineLoadError(str(exc)) from exc
        if not isinstance(message, Ready):
            self._cleanup()
            if isinstance(message, Failed) and message.kind is ErrorKind.NOT_FOUND:
                raise NotFound(message.message)
            text = message.message if isinstance(message, Failed) else f"unexpected {type(message).__name__}"
            raise EngineLoadError(
                f"vLLM could not load {self.spec.name!r} ({self.source.model}): {text}; log: {self.log_path}"
            )
        self._ready = message
        logger.info(
            "loaded %s on %s in %.1fs (%.0f MB)",
            self.spec.name,
            self.device,
            time.monotonic() - started,
            self.footprint_mb() or 0.0,
        )
        self._say_if_no_sleep_mode()

    def unload(self) -> None:
        if self._process is None:
            return
        process = self._process
        if process.is_alive() and self._conn is not None:
            try:
                self._conn.send(Stop())
            except (OSError, ValueError):
                pass
            process.join(self.stop_timeout_s)
        clean = process.exitcode == 0
        self._cleanup()
        if clean and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)  # kept only when something went wrong
        elif self.log_path is not None:
            logger.warning("the vLLM child of %s did not end cleanly; its log: %s", self.spec.name, self.log_path)
        logger.info("unloaded %s", self.spec.name)

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """Run the batch together; ``on_result(i, generation)`` as each request finishes, and
        with ``on_delta`` the text of each as vLLM's steps add to it.

        A request's ``seconds`` runs from the start of the batch to its own end. A request vLLM
        would reject (prompt longer than the context, chat on a model without a template) comes
        back with ``error`` set; the others still run. A dead child or engine is EngineError,
        naming the cause found in its log and where the log is. If ``on_result`` or ``on_delta``
        raises, the batch is abandoned (the engine is unloaded) and the exception propagates.
        """
        if self._process is not None and not self._process.is_alive():
            code = self._stopped_code()
            self._cleanup()
            raise EngineError(
                f"vLLM child of {self.spec.name!r} died before generate (exit code {code}): "
                f"{self._log_cause() or 'no error in its log'}; log: {self.log_path}"
            )
        if not self.loaded:
            raise EngineError(f"engine {self.spec.name!r} asked to generate before load()")
        if self._sleeping:
            raise EngineError(f"engine {self.spec.name!r} asked to generate while asleep; wake() it first")
        if not requests:
            return []
        jobs = tuple(self._job(request) for request in requests)
        try:
            self._conn.send(Generate(jobs=jobs, stream=on_delta is not None))
        except (OSError, ValueError) as exc:
            self._cleanup()
            raise EngineError(f"vLLM child of {self.spec.name!r} is gone: {exc}; log: {self.log_path}") from exc
        deadline = None if self.generate_timeout_s is None else time.monotonic() + self.generate_timeout_s
        out: list[Generation | None] = [None] * len(requests)
        streamed = [""] * len(requests)  # the text handed to on_delta so far, per request
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = self._receive(left, "generate")
            except EngineError:
                self._cleanup()  # a dead or stuck child is unusable; load() starts a fresh one
                raise
            if isinstance(message, BatchDone):
                break
            if isinstance(message, Partial):
                if on_delta is not None:
                    for index, text in message.texts:
                        streamed[index] += text
                        self._report(on_delta, index, text)
                continue
            if isinstance(message, Finished):
                generation = self._generation(requests[message.index], message)
                out[message.index] = generation
                if on_delta is not None:
                    rest = self._rest(generation.text, streamed[message.index], requests[message.index])
                    if rest:
                        self._report(on_delta, message.index, rest)
                if on_result is not None:
                    self._report(on_result, message.index, generation)
                continue
            if isinstance(message, Failed) and message.kind is ErrorKind.GENERATE:
                raise EngineError(f"vLLM generate failed for {self.spec.name!r}: {message.message}")
            what = message.message if isinstance(message, Failed) else f"unexpected {type(message).__name__}"
            code = self._stopped_code()
            self._cleanup()
            raise EngineError(
                f"vLLM engine of {self.spec.name!r} died during generate (child exit code {code}): "
                f"{self._log_cause() or what}; log: {self.log_path}"
            )
        missing = [requests[i].id for i, generation in enumerate(out) if generation is None]
        if missing:
            raise EngineError(f"vLLM child of {self.spec.name!r} finished the batch without {len(missing)} request(s)")
        return out  # type: ignore[return-value]  # no None left

    def _report(self, callback: Callable[[int, Any], None], index: int, value: Any) -> None:
        """Call the caller's callback; if it raises, drop the child (the rest of the batch is still
        in the pipe) and let the exception through."""
        try:
            callback(index, value)
        except BaseException:
            self._cleanup()
            raise

    def _rest(self, final: str, streamed: str, request: Request) -> str:
        """The end of a finished request's text not yet streamed (the child's last step, and what
        vLLM held back while it might start a stop string)."""
        if final.startswith(streamed):
            return final[len(streamed) :]
        logger.warning(  # vLLM's texts only grow; kept as a guard
            "%s: the final text of %r does not continue what was streamed", self.spec.name, request.id
        )
        return ""

    def _job(self, request: Request) -> Job:
        sampling = request.sampling(self.spec.sampling)
        if self.spec.prompt_mode == "completion":
            return Job(
                sampling=sampling,
                prompt=completion_prompt(request, self.spec.system_prompt),
                logprobs=request.logprobs,
            )
        messages = chat_messages(request, self.spec.system_prompt)
        return Job(
            sampling=sampling, messages=tuple((m["role"], m["content"]) for m in messages), logprobs=request.logprobs
        )

    def _generation(self, request: Request, done: Finished) -> Generation:
        return Generation(
            request_id=request.id,
            model=self.spec.name,
            text=done.text,
            tokens_in=done.tokens_in,
            tokens_out=done.tokens_out,
            seconds=done.seconds,
            finish_reason=done.finish_reason,
            error=done.error,
            logprob=done.logprob,
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _receive(self, timeout_s: float | None, what: str) -> FromChild:
        """The child's next message; EngineError if it dies, EngineTimeout if it takes too long."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._conn.poll(_POLL_S):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    pass  # the child closed the pipe: treat as a death below
            process = self._process
            if process is None or not process.is_alive():
                if process is not None:
                    process.join(5)
                code = process.exitcode if process is not None else None
                raise EngineError(
                    f"vLLM child of {self.spec.name!r} died during {what} (exit code {code}): "
                    f"{self._log_cause() or 'no error in its log'}; log: {self.log_path}"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise EngineTimeout(f"vLLM {what} of {self.spec.name!r} took longer than {timeout_s:.0f}s")

    def _stopped_code(self, wait_s: float = 10.0) -> int | None:
        """The child's exit code once it has exited (it does after its engine died), else None."""
        if self._process is None:
            return None
        self._process.join(wait_s)
        return self._process.exitcode

    def _log_cause(self) -> str | None:
        """The last error line of the child's log (the root cause vLLM printed), on one line."""
        if self.log_path is None or not self.log_path.exists():
            return None
        with self.log_path.open("rb") as handle:
            handle.seek(max(0, self.log_path.stat().st_size - 65536))
            lines = [" ".join(line.split()) for line in handle.read().decode("utf-8", "replace").splitlines()]
        errors = [_VLLM_PREFIX.sub("", line) for line in lines if _ERROR_LINE.search(line)]
        # vLLM's "engine is dead" errors only point back at the real one
        specific = [line for line in errors if "EngineDeadError" not in line and "EngineCore encountered" not in line]
        found = specific or errors or [line for line in lines if line]
        return found[-1][:500] if found else None

    def _cleanup(self) -> None:
        """Stop the child and every process it started (its process group); forget them."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready, self._sleeping = None, None, None, False
        if conn is not None:
            conn.close()
        if process is None:
            return
        pid = process.pid
        if pid is not None and pid != os.getpgrp():
            # the child made itself leader of group ``pid``; vLLM's processes are in it, and the
            # group id stays valid while any of them lives, even after the child is gone
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if process.is_alive():
            process.kill()  # killed before it could make its group
        process.join(10)  # reap it first: a zombie still counts as a member of the group
        if pid is not None and pid != os.getpgrp():
            wait_group_gone(pid, 10.0)
        if not process.is_alive():
            process.close()

    def __del__(self) -> None:  # last resort: never leave a model process behind
        try:
            self._cleanup()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown may have torn modules down
            pass
