"""``coe serve`` as a user starts it, on the default pool (real vLLM engines): the ``openai``
client plain and streaming, the SDK's ``Client``, readiness and metrics; SIGTERM stops it and
leaves no engine process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from orchestrator import Client

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_coe_serve_answers_openai_clients_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(port), "--log-level", "warning"]
    command.append("--no-skip")  # the aggregator writes (and streams) every answer, even where the experts agree
    env = {"COE_RUNS_DIR": str(tmp_path / "runs"), "COE_POOL": str(ROOT / "pools" / "default")}
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, "coe serve exited while starting"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "coe serve was not ready within 300 s"
            time.sleep(0.5)

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        assert "default/topk" in [m.id for m in client.models.list()]
        plain = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Which planet is the largest?"}], max_tokens=48
        )
        text = plain.choices[0].message.content
        trace = plain.model_extra["trace"]
        assert text and text.strip()
        assert sorted(e["expert"] for e in trace["experts"]) == ["gemma3", "smollm2"]
        assert trace["aggregation"]["method"] == "synthesis:smollm2" and trace["aggregation"]["tokens_out"] <= 48

        stream = client.chat.completions.create(
            model="default/all",
            messages=[{"role": "user", "content": "Name a primary colour."}],
            max_tokens=48,
            stream=True,
        )
        pieces, last = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            last = chunk
        streamed = last.model_extra["trace"]
        assert len(pieces) > 2  # SmolLM2's tokens, as vLLM made them
        assert "".join(pieces) == streamed["aggregation"]["text"]

        with Client(url) as sdk:
            voted = sdk.answer("Is a tomato a fruit?", options=["yes", "no"], aggregation="majority")
        assert voted.choice in ("A", "B", None) and voted.trace.aggregator == "majority"

        metrics = httpx.get(f"{url}/metrics").text
        assert 'coe_model_loads_total{model="smollm2"} 1.0' in metrics  # kept warm: loaded once
        assert 'coe_model_loads_total{model="gemma3"} 1.0' in metrics
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("VLLM" in " ".join(c.cmdline()) for c in children)  # the engines, loaded
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn shuts down gracefully (lifespan: the dispatcher stops, engines unload), then
    # raises the signal it caught again, so the process ends by SIGTERM
    assert code in (0, -signal.SIGTERM)
    time.sleep(2)
    left = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"engine processes left behind: {left}"
