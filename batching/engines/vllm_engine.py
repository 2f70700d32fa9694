"""vLLM offline engine: one child process per loaded model, so unloading gives all memory back.

The parent never imports vLLM or torch. ``load`` spawns the child
(``batching.engines._vllm_worker.serve``), which converts a packaged model if needed, builds
``vllm.LLM`` and says "ready"; ``generate`` sends the whole batch in one message; ``unload``
asks the child to stop and kills its process tree if it does not.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batching.engines.base import chat_messages, completion_prompt
from batching.models import check_ref
from batching.spec import ExpertSpec, VLLMSource
from common.requests import Generation, Request
from common.errors import EngineError, EngineLoadError, EngineTimeout, NotFound

__all__ = ["VLLMEngine"]

logger = logging.getLogger(__name__)

_POLL_S = 0.2


class VLLMEngine:
    """Serves one ``ExpertSpec`` whose source is a ``VLLMSource``, from a child process."""

    def __init__(
        self,
        spec: ExpertSpec,
        cache_dir: Path,
        *,
        load_timeout_s: float = 900.0,
        generate_timeout_s: float | None = None,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if not isinstance(spec.source, VLLMSource):
            raise EngineLoadError(f"expert {spec.name!r} is not a vllm source (kind={spec.source.kind!r})")
        self.spec = spec
        self.source: VLLMSource = spec.source
        self.cache_dir = Path(cache_dir)
        self.load_timeout_s = load_timeout_s
        self.generate_timeout_s = generate_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None
        self._info: dict[str, Any] = {}
        self._asleep = False
        self._tree: list[Any] = []  # psutil.Process of the child and its descendants
        self.log_path: Path | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id while loaded."""
        return self._process.pid if self._process is not None else None

    @property
    def supports_sleep(self) -> bool:
        """True where vLLM sleep mode works (GPU platforms); known once loaded, False on a CPU."""
        return bool(self._info.get("sleep"))

    @property
    def device(self) -> str | None:
        return self._info.get("device")

    def footprint_mb(self) -> float | None:
        """Resident memory of the child and its descendants when loaded, else the declared size."""
        if self.loaded and self._process is not None and self._process.pid is not None:
            import psutil

            try:
                root = psutil.Process(self._process.pid)
                procs = [root, *root.children(recursive=True)]
                self._tree = _merge(self._tree, procs)
                total = 0
                for proc in procs:
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
        self._cleanup()  # a child that crashed earlier: reap it before starting a new one
        check_ref(self.source.model)
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"vllm-{self.spec.name}-{os.getpid()}-{time.time_ns()}.log"
        config = {
            "model": self.source.model,
            "cache_dir": str(self.cache_dir),
            "dtype": self.source.dtype,
            "max_model_len": self.source.max_model_len,
            "max_num_seqs": self.source.max_num_seqs,
            "enforce_eager": self.source.enforce_eager,
            "kv_cache_gib": self.source.kv_cache_gib,
            "gpu_memory_utilization": self.source.gpu_memory_utilization,
            "tensor_parallel_size": self.source.tensor_parallel_size,
            "seed": self.spec.sampling.seed or 0,
            "chat_template": self.spec.chat_template,
            "log_path": str(self.log_path),
            "parent_pid": os.getpid(),
        }
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
        if message[0] != "ready":
            self._cleanup()
            kind, text = message[1], message[2]
            if kind == "NotFound":
                raise NotFound(text.removeprefix("NotFound: "))
            raise EngineLoadError(f"vLLM could not load {self.spec.name!r} ({self.source.model}): {text}")
        self._info = message[1]
        self._asleep = False
        self._snapshot_tree()
        logger.info(
            "loaded %s on %s in %.1fs (%.0f MB)",
            self.spec.name,
            self.device,
            time.monotonic() - started,
            self.footprint_mb() or 0.0,
        )

    def unload(self) -> None:
        if self._process is None:
            return
        process = self._process
        self._snapshot_tree()
        if process.is_alive() and self._conn is not None:
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
            process.join(self.stop_timeout_s)
        clean = process.exitcode == 0
        self._cleanup()
        if clean and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)  # kept only when something went wrong
        logger.info("unloaded %s", self.spec.name)

    def sleep(self) -> None:
        """Offload the weights and drop the KV cache, keeping the process (GPU sleep mode)."""
        if not self.supports_sleep:
            raise EngineError(f"engine {self.spec.name!r} does not support sleep mode on {self.device or 'this platform'}")
        if not self._asleep:
            self._command(("sleep",), "sleep")
            self._asleep = True
            logger.info("put %s to sleep", self.spec.name)

    def wake(self) -> None:
        if self._asleep:
            self._command(("wake",), "wake")
            self._asleep = False
            logger.info("woke %s", self.spec.name)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Run the batch together; each Generation's ``seconds`` is the whole batch's wall time.

        A request vLLM would reject (prompt longer than the context, chat on a model without a
        template) comes back with ``error`` set; the others still run. A dead child is EngineError.
        """
        if not self.loaded:
            raise EngineError(f"engine {self.spec.name!r} asked to generate before load()")
        if not requests:
            return []
        if self._asleep:
            self.wake()
        jobs = [self._job(request) for request in requests]
        results = self._command(("generate", jobs), "generate", self.generate_timeout_s)
        return [
            Generation(request_id=request.id, model=self.spec.name, **result)
            for request, result in zip(requests, results, strict=True)
        ]

    def _job(self, request: Request) -> dict[str, Any]:
        sampling = request.sampling(self.spec.sampling).model_dump()
        if self.spec.prompt_mode == "completion":
            return {"prompt": completion_prompt(request, self.spec.system_prompt), "sampling": sampling}
        return {"messages": chat_messages(request, self.spec.system_prompt), "sampling": sampling}

    # -- plumbing -----------------------------------------------------------------------------

    def _command(self, message: tuple, what: str, timeout_s: float | None = None) -> Any:
        if not self.loaded:
            raise EngineError(f"engine {self.spec.name!r} is not loaded")
        try:
            self._conn.send(message)
        except (OSError, ValueError) as exc:
            self._cleanup()
            raise EngineError(f"vLLM child of {self.spec.name!r} is gone: {exc}") from exc
        try:
            reply = self._receive(timeout_s, what)
        except EngineError:
            self._cleanup()  # a dead or stuck child is unusable; load() starts a fresh one
            raise
        if reply[0] != "ok":
            raise EngineError(f"vLLM {what} failed for {self.spec.name!r}: {reply[2]}")
        return reply[1]

    def _receive(self, timeout_s: float | None, what: str) -> tuple:
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
                    f"vLLM child of {self.spec.name!r} died during {what} (exit code {code}): {self._last_log_line()}"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise EngineTimeout(f"vLLM {what} of {self.spec.name!r} took longer than {timeout_s:.0f}s")

    def _last_log_line(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        with self.log_path.open("rb") as handle:
            handle.seek(max(0, self.log_path.stat().st_size - 16384))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        errors = [line for line in lines if "Error" in line or "error" in line]
        return (errors or lines or ["empty log"])[-1][:500]

    def _snapshot_tree(self) -> None:
        """Remember the child's process tree, so orphans can be killed after the child is gone."""
        import psutil

        if self._process is None or self._process.pid is None:
            return
        try:
            root = psutil.Process(self._process.pid)
            self._tree = _merge(self._tree, [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass

    def _cleanup(self) -> None:
        """Stop the child and every process it started; forget them."""
        if self._process is not None and self._process.is_alive():
            self._snapshot_tree()
        process, conn, tree = self._process, self._conn, self._tree
        self._process, self._conn, self._info, self._asleep, self._tree = None, None, {}, False, []
        if conn is not None:
            conn.close()
        if process is None:
            return
        import psutil

        alive = [proc for proc in tree if proc.is_running()]  # is_running also checks the pid was not reused
        for proc in alive:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(alive, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=10)
        process.join(10)
        if not process.is_alive():
            process.close()

    def __del__(self) -> None:  # last resort: never leave a model process behind
        try:
            self._cleanup()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown may have torn modules down
            pass


def _merge(known: list[Any], found: list[Any]) -> list[Any]:
    pids = {proc.pid for proc in known}
    return known + [proc for proc in found if proc.pid not in pids]
