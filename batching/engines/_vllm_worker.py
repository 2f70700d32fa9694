"""The child process that holds one vLLM model (started by ``VLLMEngine`` with spawn).

Protocol over a ``multiprocessing`` pipe, one tuple per message:

    child -> parent   ("ready", info) | ("error", "Type: message")
    parent -> child   ("generate", jobs) | ("sleep",) | ("wake",) | ("stop",)
    child -> parent   ("ok", result) | ("error", "Type: message")

``jobs`` is a list of dicts: ``{"prompt": str}`` or ``{"messages": [...]}`` plus ``"sampling"``.
The child writes its stdout/stderr (vLLM's logs) to ``log_path`` so the parent can quote them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

GIB = 1 << 30


def _watch_parent(parent_pid: int) -> None:
    """Exit if the parent dies, so no model is left holding memory."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(1.0)


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _describe(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]


def build_llm(config: dict[str, Any]):
    """Make the ``vllm.LLM`` for ``config``; returns (llm, info)."""
    from batching.models import resolve_model

    model = resolve_model(config["model"], Path(config["cache_dir"]))
    # vLLM's own engine and worker processes stay (VLLM_ENABLE_V1_MULTIPROCESSING=1, its default):
    # running the engine inside this child started faster (14 s vs 31 s, 2.6 vs 4.2 GB for SmolLM2
    # on a CPU) but generated 25x slower (4 chats x 32 tokens: 57 s vs 2.2 s)
    from vllm import LLM
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    sleep = bool(current_platform.is_sleep_mode_available()) and not on_cpu
    dtype = config["dtype"]
    if dtype == "auto" and on_cpu:
        dtype = "float32"  # measured 4.5x faster than bfloat16 on AVX2 CPUs
    options: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "max_model_len": config["max_model_len"],
        "max_num_seqs": config["max_num_seqs"],
        "enforce_eager": config["enforce_eager"],
        "seed": config["seed"],
    }
    if on_cpu:
        gib = float(config["kv_cache_gib"])
        if gib.is_integer():
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(gib))
        else:
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            options["kv_cache_memory_bytes"] = int(gib * GIB)
    else:
        options["gpu_memory_utilization"] = config["gpu_memory_utilization"]
        options["tensor_parallel_size"] = config["tensor_parallel_size"]
        options["enable_sleep_mode"] = sleep
    llm = LLM(**options)
    info = {"model": model, "device": "cpu" if on_cpu else current_platform.device_type, "sleep": sleep}
    return llm, info


def _sampling(raw: dict[str, Any]):
    from vllm import SamplingParams

    return SamplingParams(
        max_tokens=raw["max_tokens"],
        temperature=raw["temperature"],
        top_p=raw["top_p"],
        seed=raw["seed"],
        stop=list(raw["stop"]) or None,
        repetition_penalty=raw.get("repetition_penalty", 1.0),
    )


def _prompt_tokens(tokenizer, job: dict[str, Any], chat_template: str | None) -> int:
    if "prompt" in job:
        return len(tokenizer.encode(job["prompt"]))
    text = tokenizer.apply_chat_template(
        job["messages"], chat_template=chat_template, add_generation_prompt=True, tokenize=False
    )
    return len(tokenizer.encode(text, add_special_tokens=False))


def screen(llm, jobs: list[dict[str, Any]], chat_template: str | None, max_model_len: int) -> dict[int, str]:
    """Errors of the jobs vLLM would reject (prompt too long, chat without a template), by index.

    One bad prompt would otherwise fail the whole batch. ``max_tokens`` is trimmed to the room left.
    """
    tokenizer = llm.get_tokenizer()
    errors: dict[int, str] = {}
    for i, job in enumerate(jobs):
        try:
            count = _prompt_tokens(tokenizer, job, chat_template)
        except Exception as exc:  # noqa: BLE001 - e.g. a base model without a chat template
            errors[i] = f"cannot build the prompt: {_describe(exc)}"
            continue
        if count >= max_model_len:
            errors[i] = f"prompt has {count} tokens; the model's context (max_model_len) is {max_model_len}"
        else:
            job["sampling"]["max_tokens"] = min(job["sampling"]["max_tokens"], max_model_len - count)
    return errors


def generate(
    llm, jobs: list[dict[str, Any]], chat_template: str | None, max_model_len: int
) -> list[dict[str, Any]]:
    """Run every job in one vLLM call per prompt kind; results in job order."""
    errors = screen(llm, jobs, chat_template, max_model_len)
    results: list[dict[str, Any] | None] = [{"error": errors[i]} if i in errors else None for i in range(len(jobs))]
    chats = [i for i, job in enumerate(jobs) if "messages" in job and i not in errors]
    prompts = [i for i, job in enumerate(jobs) if "prompt" in job and i not in errors]
    started = time.monotonic()
    outputs: dict[int, Any] = {}
    if chats:
        done = llm.chat(
            [jobs[i]["messages"] for i in chats],
            [_sampling(jobs[i]["sampling"]) for i in chats],
            use_tqdm=False,
            chat_template=chat_template,
        )
        outputs.update(zip(chats, done, strict=True))
    if prompts:
        done = llm.generate(
            [jobs[i]["prompt"] for i in prompts],
            [_sampling(jobs[i]["sampling"]) for i in prompts],
            use_tqdm=False,
        )
        outputs.update(zip(prompts, done, strict=True))
    seconds = time.monotonic() - started
    for i, output in outputs.items():
        completion = output.outputs[0]
        results[i] = {
            "text": completion.text,
            "tokens_in": len(output.prompt_token_ids or ()),
            "tokens_out": len(completion.token_ids),
            "finish_reason": completion.finish_reason,
            "seconds": seconds,
        }
    return results  # type: ignore[return-value]


def serve(conn, config: dict[str, Any]) -> None:
    """Child entry point: build the model, then answer commands until told to stop."""
    _redirect_output(config["log_path"])
    threading.Thread(target=_watch_parent, args=(config["parent_pid"],), daemon=True).start()
    try:
        llm, info = build_llm(config)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as one line
        traceback.print_exc()
        kind = "NotFound" if type(exc).__name__ == "NotFound" else "load"
        conn.send(("error", kind, _describe(exc)))
        _exit(1)
    conn.send(("ready", info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        command = message[0]
        if command == "stop":
            break
        try:
            if command == "generate":
                conn.send(("ok", generate(llm, message[1], config.get("chat_template"), config["max_model_len"])))
            elif command == "sleep":
                llm.sleep(level=1)
                conn.send(("ok", None))
            elif command == "wake":
                llm.wake_up()
                conn.send(("ok", None))
            else:
                conn.send(("error", "command", f"unknown command {command!r}"))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the child stays usable
            traceback.print_exc()
            conn.send(("error", "generate", _describe(exc)))
    _shutdown(llm)
    conn.close()
    _exit(0)


def _exit(code: int) -> None:
    """Leave without interpreter teardown, which can hang on vLLM's background threads."""
    _release_semaphores()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _release_semaphores() -> None:
    """Run multiprocessing's finalizers (they unlink named semaphores), which os._exit skips."""
    try:
        from multiprocessing import util

        util._run_finalizers(0)
    except Exception:  # noqa: BLE001 - only tidiness is at stake
        traceback.print_exc()


def _shutdown(llm) -> None:
    """Stop vLLM's engine process explicitly rather than waiting for garbage collection."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort; the parent kills what is left
        traceback.print_exc()
