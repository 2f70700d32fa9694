"""What the service benchmarks share: ``coe serve`` as a child process, MMLU-Pro questions with
their ids (replay experts answer by id), quantiles and requests sent at a steady rate."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """``coe serve`` as a child process (this checkout's code), started and waited for until
    ``/readyz`` says ready (the warm-up done); stopped with SIGTERM (engines unloaded) at the end.
    ``key``: the API key to send on every call, when the service has keys."""

    def __init__(
        self, *args: str, ready_timeout: float = 900, key: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        command = [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(self.port)]
        command += ["--log-level", "warning"]
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [*command, *args], cwd=ROOT, start_new_session=True, env={**os.environ, **(env or {})}
        )
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coe serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", headers=self.headers, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > ready_timeout:
                self.stop()
                raise TimeoutError(f"coe serve was not ready within {ready_timeout} s")
            time.sleep(0.25)
        self.ready_s = time.monotonic() - started
        """Seconds from the start of the process until ready."""

    def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` (its labels, if given, included in the prefix)."""
        text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=30).text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    def rss_mb(self) -> float:
        """Resident memory of the service's process (its engine processes not included)."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def mmlu_questions(n: int, offset: int = 0) -> list[dict]:
    """``n`` MMLU-Pro test questions from ``offset``, as request items with their ids. Past the
    last question the list starts again, each text with a suffix naming its round, so every
    text is distinct while its id (what replay experts answer by) is recorded. The few items the
    service refuses (their text holds control characters: 422) are left out."""
    from common.errors import BadInput
    from eval import load_benchmark
    from orchestrator import load_settings
    from orchestrator.pipeline.inputs import as_query

    items = []
    for q in load_benchmark("mmlu_pro").questions(load_settings().data_dir, "test"):
        try:  # as asked first, and again (a trailing control character is no longer trailing then)
            as_query(q.text, 16_000, options=q.options)
            as_query(f"{q.text}\n(Asked again, round 2.)", 16_000, options=q.options)
        except BadInput:
            continue
        items.append(q)
    out = []
    for i in range(offset, offset + n):
        q = items[i % len(items)]
        text = q.text if i < len(items) else f"{q.text}\n(Asked again, round {i // len(items) + 1}.)"
        out.append({"question": text, "options": list(q.options), "id": q.id})
    return out


async def at_rate(
    url: str, bodies: list[tuple[dict, dict[str, str]]], every_s: float, path: str = "/v1/answer"
) -> list[tuple[int, float]]:
    """POST each (body, headers) ``every_s`` seconds after the one before, without waiting for
    answers; each reply's status (-1: no reply) and seconds."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()

        async def one(i: int, body: dict, headers: dict[str, str]) -> tuple[int, float]:
            await asyncio.sleep(max(0.0, started + i * every_s - time.perf_counter()))
            sent = time.perf_counter()
            try:
                reply = await client.post(path, json=body, headers=headers)
            except httpx.HTTPError:
                return -1, time.perf_counter() - sent
            return reply.status_code, time.perf_counter() - sent

        return await asyncio.gather(*(one(i, body, headers) for i, (body, headers) in enumerate(bodies)))
