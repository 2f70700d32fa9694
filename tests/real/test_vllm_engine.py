"""VLLMEngine against real vLLM (CPU build here) and the packaged default models."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from batching.engines.vllm_engine import VLLMEngine
from batching.spec import ExpertSpec
from common.errors import EngineError, EngineLoadError, NotFound
from common.requests import Generation, Message, Request, Sampling

MB = 2**20


def smollm2(**fields) -> ExpertSpec:
    return ExpertSpec(
        name="smollm2",
        source={"kind": "vllm", "model": "packaged:smollm2-135m-instruct", "max_model_len": 1024},
        sampling={"max_tokens": 24},
        **fields,
    )


def used_mb() -> float:
    return psutil.virtual_memory().used / MB


def test_chat_batch_then_unload_returns_memory(cache_dir: Path) -> None:
    parent = psutil.Process()
    rss_before, used_before = parent.memory_info().rss / MB, used_mb()
    engine = VLLMEngine(smollm2(system_prompt="Answer in one short sentence."), cache_dir=cache_dir)
    assert not engine.loaded
    engine.load()
    try:
        child = psutil.Process(engine.pid)
        loaded_mb = engine.footprint_mb()
        assert loaded_mb is not None and loaded_mb > 500  # measured, not the (absent) declared size
        assert engine.device == "cpu"
        requests = [
            Request.user(f"q{i}", f"Name a colour that starts with the letter {c}.") for i, c in enumerate("BGRPYW")
        ]
        requests.append(Request.user("short", "Write a long story about a dragon and a knight.", max_tokens=5))
        generations = engine.generate([*requests, Request.user("huge", "word " * 1500)])
    finally:
        engine.unload()
    huge = generations.pop()
    assert not huge.ok and "max_model_len" in huge.error and "1024" in huge.error  # the rest still ran
    assert [g.request_id for g in generations] == [r.id for r in requests]
    for generation in generations:
        assert generation.ok and generation.text.strip()
        assert generation.tokens_in > 5 and 0 < generation.tokens_out <= 24
        assert generation.seconds > 0 and generation.finish_reason in ("stop", "length")
        assert generation.model == "smollm2"
    assert generations[-1].tokens_out <= 5 < max(g.tokens_out for g in generations[:-1])

    assert not engine.loaded and not child.is_running()
    assert engine.footprint_mb() is None  # nothing declared, nothing loaded
    engine.unload()  # idempotent
    assert parent.memory_info().rss / MB - rss_before < 200
    # other work shares this machine; the model's memory must at least be mostly gone
    assert used_mb() - used_before < loaded_mb / 2


def test_child_crash_is_an_engine_error_and_load_recovers(cache_dir: Path) -> None:
    engine = VLLMEngine(smollm2(), cache_dir=cache_dir)
    engine.load()
    try:
        os.kill(engine.pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="died during generate"):
            engine.generate([Request.user("a", "Say hello.")])
        assert not engine.loaded
        engine.load()
        [generation] = engine.generate([Request(id="b", messages=(Message(role="user", content="Say hello."),))])
        assert generation.text.strip() and generation.tokens_out > 0
    finally:
        engine.unload()


def test_gemma_base_model_in_completion_mode(cache_dir: Path) -> None:
    spec = ExpertSpec(
        name="gemma3",
        source={"kind": "vllm", "model": "packaged:gemma3-270m", "max_model_len": 1024},
        prompt_mode="completion",
        sampling={"max_tokens": 16},
    )
    engine = VLLMEngine(spec, cache_dir=cache_dir)
    engine.load()
    try:
        generations = engine.generate(
            [Request.user("capital", "What is the capital of France?"), Request.user("sum", "What is 2 + 2?")]
        )
    finally:
        engine.unload()
    for generation in generations:
        assert generation.text.strip() and 0 < generation.tokens_out <= 16 and generation.tokens_in > 5


class _TokenizerOnly:
    """Stands in for vllm.LLM where the worker's screening only needs the real tokenizer."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)

    def get_tokenizer(self):
        return self.tokenizer


def test_screen_finds_requests_vllm_would_reject(cache_dir: Path) -> None:
    from batching.engines._vllm_protocol import Job
    from batching.engines._vllm_worker import screen
    from batching.models import resolve_model

    sampling = Sampling(max_tokens=100, temperature=0.0, top_p=1.0, seed=0, stop=())
    gemma = _TokenizerOnly(resolve_model("packaged:gemma3-270m", cache_dir))
    jobs = [
        Job(sampling=sampling, messages=(("user", "Hi"),)),
        Job(sampling=sampling, prompt="Question: Hi\n\nAnswer:"),
    ]
    errors, max_tokens = screen(gemma, jobs, chat_template=None, max_model_len=64)
    assert list(errors) == [0] and "cannot build the prompt" in errors[0]  # a base model has no chat template
    assert max_tokens[1] < 64  # trimmed to the room left in the context

    smol = _TokenizerOnly(resolve_model("packaged:smollm2-135m-instruct", cache_dir))
    jobs = [Job(sampling=sampling, messages=(("user", text),)) for text in ("Hi", "word " * 200)]
    errors, _ = screen(smol, jobs, chat_template=None, max_model_len=128)
    assert list(errors) == [1] and "max_model_len) is 128" in errors[1]


def test_broken_model_folder_is_a_load_error_quoting_the_child(cache_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    spec = ExpertSpec(name="broken", source={"kind": "vllm", "model": str(folder)})
    engine = VLLMEngine(spec, cache_dir=cache_dir)
    with pytest.raises(EngineLoadError, match="broken") as info:
        engine.load()
    assert "no-such-architecture" in str(info.value) or "Error" in str(info.value)
    assert not engine.loaded


def test_missing_local_folder_is_not_found_without_a_child(cache_dir: Path, tmp_path: Path) -> None:
    spec = ExpertSpec(name="gone", source={"kind": "vllm", "model": str(tmp_path / "nothing-here")})
    engine = VLLMEngine(spec, cache_dir=cache_dir)
    with pytest.raises(NotFound, match="nothing-here"):
        engine.load()
    assert engine.pid is None


def test_packaged_smollm2_converts_from_its_gguf(tmp_path: Path) -> None:
    from batching.models import prepare_models, verify_manifest

    lines: list[str] = []
    folder = prepare_models(["smollm2-135m-instruct"], tmp_path, progress=lines.append)["smollm2-135m-instruct"]
    assert verify_manifest(folder) is None
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (folder / "model.safetensors").stat().st_size > 200 * MB
    assert "{%" in (folder / "chat_template.jinja").read_text()  # an instruct model keeps its template
    assert lines[0].endswith("preparing") and "ready in" in lines[-1]


def _vllm_processes(root_pid: int) -> dict[str, psutil.Process]:
    found = {}
    for proc in psutil.Process(root_pid).children(recursive=True):
        line = " ".join(proc.cmdline()) + " " + proc.name()
        for role in ("EngineCore", "Worker"):
            if role in line:
                found[role] = proc
    return found


def test_dead_engine_error_names_the_cause_and_keeps_the_log(cache_dir: Path) -> None:
    engine = VLLMEngine(smollm2(), cache_dir=cache_dir, cpus=(1,))
    engine.load()
    try:
        processes = _vllm_processes(engine.pid)
        assert processes["Worker"].cpu_affinity() == [1]  # bound to the cores it was given
        assert {os.getpgid(p.pid) for p in processes.values()} == {engine.pid}  # all in the child's group
        processes["EngineCore"].kill()
        with pytest.raises(EngineError, match=r"died (during|before) generate .*exit code 1.*log: ") as info:
            engine.generate([Request.user("a", "Say hello.")])
    finally:
        engine.unload()
    message = str(info.value)
    assert "\n" not in message and str(engine.log_path) in message
    assert re.search(r"exit code 1\): \S.*; log: ", message)  # a cause from the log
    assert engine.log_path is not None and engine.log_path.exists()  # kept: the engine died
    assert not any(p.is_running() for p in processes.values())


@pytest.fixture(scope="module")
def loaded(cache_dir: Path) -> Iterator[VLLMEngine]:
    engine = VLLMEngine(smollm2(), cache_dir=cache_dir)
    engine.load()
    yield engine
    engine.unload()


def test_each_request_is_reported_as_soon_as_it_finishes(loaded: VLLMEngine) -> None:
    started = time.monotonic()
    seen: list[tuple[int, float, Generation]] = []
    lengths = [64, 2, 32, 8]
    requests = [Request.user(f"n{n}", "Tell me a long story about a cat and a dog.", max_tokens=n) for n in lengths]
    requests.append(Request.user("huge", "word " * 1500))  # screened out: reported first, without running
    out = loaded.generate(requests, on_result=lambda i, g: seen.append((i, time.monotonic() - started, g)))
    returned = time.monotonic() - started
    assert seen[0][0] == 4 and not seen[0][2].ok  # the screened-out request is reported at once
    assert sorted(i for i, _, _ in seen) == [0, 1, 2, 3, 4]
    assert [g for _, _, g in sorted(seen, key=lambda s: s[0])] == out  # the same generations, in request order
    finished = [g.tokens_out for _, _, g in seen[1:]]
    assert finished == sorted(finished)  # started together, so the shorter answers finished first
    assert out[1].tokens_out <= 2 < out[0].tokens_out
    when = {i: t for i, t, _ in seen}
    assert when[1] < when[0] <= returned  # the 2-token answer was reported well before the long one
    assert out[1].seconds < out[0].seconds  # each one's seconds ends when it finished


def test_seeded_sampling_with_long_prompts_completes_and_honours_seeds(loaded: VLLMEngine) -> None:
    filler = "The quick brown fox jumps over the lazy dog. "
    requests = [
        Request.user(f"s{i}", f"Topic {i}. " + filler * (20 + 6 * i), temperature=0.7, seed=i, max_tokens=16)
        for i in range(10)
    ]  # about 4,700 prompt tokens together: more than one prefill step holds
    out = loaded.generate(requests)
    assert sum(g.tokens_in for g in out) > 4096
    assert all(g.ok and g.tokens_out > 0 for g in out), [g.error for g in out]
    again = loaded.generate(requests[:3])
    assert [g.text for g in again] == [g.text for g in out[:3]]  # the same seed gives the same text


def test_on_this_cpu_the_engine_cannot_sleep_and_keeps_serving(loaded: VLLMEngine) -> None:
    """vLLM's CPU build has no sleep mode: the engine says so, a sleep asks nothing of the child,
    and a warm session would unload it instead (it is not sleepable)."""
    from batching.engines._vllm_sleep import available
    from batching.warm import sleepable

    assert loaded.device == "cpu" and not available()
    assert not loaded.can_sleep and not sleepable(loaded)
    assert not loaded.sleep() and not loaded.sleeping and loaded.loaded
    loaded.wake()  # nothing to wake
    out = loaded.generate([Request.user("after-sleep", "Say hello.", max_tokens=4)])
    assert out[0].ok and out[0].text.strip()


def _worker_cores(engine: VLLMEngine) -> set[tuple[int, ...]]:
    """The cores each thread of the engine's vLLM worker process may run on (each distinct set once)."""
    workers = [p for p in psutil.Process(engine.pid).children(recursive=True) if "Worker" in p.name()]
    assert len(workers) == 1, [p.name() for p in workers]
    return {
        tuple(sorted(os.sched_getaffinity(int(task.name)))) for task in Path(f"/proc/{workers[0].pid}/task").iterdir()
    }


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_the_worker_moves_to_other_cores_without_a_reload(cache_dir: Path) -> None:
    cores = tuple(sorted(os.sched_getaffinity(0)))
    engine = VLLMEngine(smollm2(), cache_dir=cache_dir, cpus=(cores[1],))
    engine.load()
    try:
        assert engine.can_bind and _worker_cores(engine) == {(cores[1],)}  # loaded wide, then bound to its core
        question = [Request.user("m", "Name three colours.", max_tokens=12)]
        before = engine.generate(question)
        pid = engine.pid
        spread = {(core,) for core in cores}  # one to a core, as vLLM lays its OpenMP threads out at start
        assert engine.bind(cores) and engine.cpus == cores and _worker_cores(engine) == spread
        after = engine.generate(question)
        assert engine.pid == pid  # the same child: moved, not reloaded
        assert after[0].text == before[0].text  # greedy: where it computes changes nothing it writes
        assert engine.bind((cores[0],)) and _worker_cores(engine) == {(cores[0],)}
        with pytest.raises(EngineError, match="cannot bind"):
            engine.bind((max(cores) + 1,))  # a core this process may not use
        assert engine.generate(question)[0].text == before[0].text
        story = [Request.user("long", "Tell me a long story about a lighthouse keeper.", max_tokens=96)]
        box: dict[str, list[Generation]] = {}
        engine_core = _vllm_processes(engine.pid)["EngineCore"]
        used, started = sum(engine_core.cpu_times()[:2]), time.perf_counter()
        batch = threading.Thread(target=lambda: box.update(out=engine.generate(story)))
        batch.start()
        time.sleep(1.0)
        running = batch.is_alive()
        assert engine.bind(cores)  # during the batch: sent, and done between two of its steps
        batch.join(300)
        assert running and box["out"][0].ok and box["out"][0].tokens_out > 20
        busy = (sum(engine_core.cpu_times()[:2]) - used) / (time.perf_counter() - started)
        assert busy < 0.35, f"vLLM's engine process used {busy:.0%} of a core waiting on its worker"  # _vllm_plugin
        assert _worker_cores(engine) == spread and engine.generate(question)[0].text == before[0].text
    finally:
        engine.unload()
