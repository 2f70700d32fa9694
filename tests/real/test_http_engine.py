"""HTTPEngine against a real vLLM OpenAI-compatible server (tests/real/vllm_server.py) of SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from batching.engines.http import HTTPEngine
from batching.spec import ExpertSpec
from common.errors import EndpointError, EngineLoadError
from common.requests import Request

from .vllm_server import VLLMServer, free_port


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[VLLMServer]:
    spec = ExpertSpec(
        name="smollm2",
        source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct", "max_model_len": 1024, "max_num_seqs": 8},
        sampling={"max_tokens": 16},
    )
    with VLLMServer(spec, cache_dir) as running:
        yield running


def test_chat_and_completion_through_a_real_server(server: VLLMServer) -> None:
    chat = HTTPEngine(server.expert_spec())
    chat.load()
    assert chat.served_models == ["smollm2"]
    questions = [
        Request.user(f"q{i}", f"Give one word that rhymes with {w}.")
        for i, w in enumerate(["cat", "sun", "tree", "blue"])
    ]
    out = chat.generate(questions)
    chat.unload()
    assert [g.request_id for g in out] == ["q0", "q1", "q2", "q3"]
    for generation in out:
        assert generation.ok, generation.error
        assert generation.text.strip() and generation.tokens_in > 5 and 0 < generation.tokens_out <= 16

    completion = HTTPEngine(server.expert_spec().model_copy(update={"prompt_mode": "completion"}))
    completion.load()
    [generation] = completion.generate([Request.user("c", "What is the capital of France?", max_tokens=6)])
    completion.unload()
    assert generation.ok and generation.text.strip() and 0 < generation.tokens_out <= 6


def test_server_rejects_an_over_long_prompt_with_its_message(server: VLLMServer) -> None:
    engine = HTTPEngine(server.expert_spec())
    engine.load()
    [generation] = engine.generate([Request.user("long", "word " * 3000)])
    engine.unload()
    assert not generation.ok and "HTTP 400" in generation.error


def test_wrong_model_name_and_wrong_path_on_a_real_server(server: VLLMServer) -> None:
    wrong_model = server.expert_spec().model_copy(
        update={"source": server.expert_spec().source.model_copy(update={"model": "gpt-9"})}
    )
    with pytest.raises(EndpointError, match="does not serve model 'gpt-9'; it serves: smollm2"):
        HTTPEngine(wrong_model).load()
    root = server.base_url.removesuffix("/v1")
    wrong_path = server.expert_spec().model_copy(
        update={"source": server.expert_spec().source.model_copy(update={"base_url": root + "/api"})}
    )
    with pytest.raises(EndpointError, match="404"):
        HTTPEngine(wrong_path).load()


def test_dead_endpoint_is_a_clear_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    engine = HTTPEngine(
        ExpertSpec(name="gone", source={"kind": "http", "base_url": base_url, "model": "gone", "retries": 1})
    )
    with pytest.raises(EndpointError, match=f"cannot reach {base_url}/models: connection refused"):
        engine.load()
    assert not engine.loaded


def test_server_stop_kills_its_process_group(cache_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    spec = ExpertSpec(name="broken", source={"kind": "vllm", "model": str(folder)})
    server = VLLMServer(spec, cache_dir, startup_timeout_s=240)
    with pytest.raises(EngineLoadError, match="exited with code"):
        server.start()
    assert server.pid is None and not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/v1/models", timeout=2)
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or [])]
