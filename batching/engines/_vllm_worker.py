"""The child process that holds one vLLM model (started by ``VLLMEngine`` with spawn).

It speaks the typed messages of ``_vllm_protocol``. It writes its stdout/stderr (vLLM's
logs) to the config's ``log_path`` so the parent can quote them, and exits non-zero when its
engine died, so the parent keeps that log.

No process outlives the parent: the child leads its own process group, which vLLM's engine
and worker processes join, and kills that group as soon as the parent is gone
(``_orphans.guard_group``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batching.engines._orphans import guard_group
from batching.engines._vllm_protocol import (
    BatchDone,
    ErrorKind,
    Failed,
    Finished,
    Generate,
    Job,
    Partial,
    Ready,
    Sleep,
    Stop,
    Wake,
    WorkerConfig,
    describe,
)
from batching.engines._vllm_sleep import available, switch
from batching.engines.base import mean_logprob
from batching.engines.vllm_options import engine_args
from common.errors import NotFound


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def build_llm(config: WorkerConfig):
    """Make the ``vllm.LLM`` for ``config``; returns (llm, ready message)."""
    from batching.models import resolve_model

    model = resolve_model(config.source.model, Path(config.cache_dir))
    # vLLM's own engine and worker processes stay (VLLM_ENABLE_V1_MULTIPROCESSING=1, its default):
    # running the engine inside this child started faster (14 s vs 31 s, 2.6 vs 4.2 GB for SmolLM2
    # on a CPU) but generated 25x slower (4 chats x 32 tokens: 57 s vs 2.2 s)
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    sleep_mode = config.source.sleep_mode and available()
    args = engine_args(
        config.source,
        model,
        cpu=on_cpu,
        seed=config.seed,
        chat_template=config.chat_template,
        cpus=config.cpus,
        sleep_mode=sleep_mode,
    )
    os.environ.update(args.environment())
    if args.kv_cache_bytes is not None:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the byte count is passed to LLM instead
    print(f"coe: vLLM options {args.llm_kwargs()} environment {args.environment()}", flush=True)
    from vllm import LLM

    llm = LLM(**args.llm_kwargs())
    device = "cpu" if on_cpu else str(current_platform.device_type)
    return llm, Ready(model=model, device=device, sleep_mode=sleep_mode)


def _sampling(job: Job, max_tokens: int):
    from vllm import SamplingParams

    raw = job.sampling
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=raw.temperature,
        top_p=raw.top_p,
        seed=raw.seed,
        stop=list(raw.stop) or None,
        repetition_penalty=raw.repetition_penalty,
        logprobs=0 if job.logprobs else None,  # 0: the sampled token's own log-probability only
    )


def _mean_logprob(completion, asked: bool) -> float | None:
    """The mean log-probability of a finished completion's tokens (vLLM 0.32 fills ``logprobs``,
    one {token id: Logprob} per generated token, and their sum ``cumulative_logprob``)."""
    if not asked:
        return None
    steps = completion.logprobs
    if steps is not None and len(steps) == len(completion.token_ids):
        sampled = [(step or {}).get(token) for step, token in zip(steps, completion.token_ids, strict=True)]
        return mean_logprob(None if entry is None else entry.logprob for entry in sampled)
    if completion.cumulative_logprob is not None and completion.token_ids:
        return mean_logprob([completion.cumulative_logprob / len(completion.token_ids)])
    return None


def _prompt_tokens(tokenizer, job: Job, chat_template: str | None) -> int:
    if job.prompt is not None:
        return len(tokenizer.encode(job.prompt))
    text = tokenizer.apply_chat_template(
        job.chat(), chat_template=chat_template, add_generation_prompt=True, tokenize=False
    )
    return len(tokenizer.encode(text, add_special_tokens=False))


def screen(
    llm, jobs: tuple[Job, ...] | list[Job], chat_template: str | None, max_model_len: int
) -> tuple[dict[int, str], list[int]]:
    """Errors of the jobs vLLM would reject (prompt too long, chat without a template), by index,
    and every job's ``max_tokens`` trimmed to the room its prompt leaves in the context.

    One bad prompt would otherwise fail the whole batch.
    """
    tokenizer = llm.get_tokenizer()
    errors: dict[int, str] = {}
    max_tokens = [job.sampling.max_tokens for job in jobs]
    for i, job in enumerate(jobs):
        try:
            count = _prompt_tokens(tokenizer, job, chat_template)
        except Exception as exc:  # noqa: BLE001 - e.g. a base model without a chat template
            errors[i] = f"cannot build the prompt: {describe(exc)}"
            continue
        if count >= max_model_len:
            errors[i] = f"prompt has {count} tokens; the model's context (max_model_len) is {max_model_len}"
        else:
            max_tokens[i] = min(max_tokens[i], max_model_len - count)
    return errors, max_tokens


def generate(
    llm, jobs: tuple[Job, ...], chat_template: str | None, max_model_len: int, send, stream: bool = False
) -> None:
    """Run the batch as one continuous batch; ``send`` each request's ``Finished`` as it ends,
    then ``BatchDone``. Screened-out requests are reported first. With ``stream``, each engine
    step also sends one ``Partial`` with the text it added to the requests still running."""
    errors, max_tokens = screen(llm, jobs, chat_template, max_model_len)
    for i, error in errors.items():
        send(Finished(index=i, error=error))
    chats = [i for i, job in enumerate(jobs) if job.messages is not None and i not in errors]
    prompts = [i for i, job in enumerate(jobs) if job.prompt is not None and i not in errors]
    started = time.monotonic()
    pending: dict[str, tuple[int, str]] = {}  # vLLM's external id -> (index, internal id)
    sent: dict[int, str] = {}  # index -> the text sent so far in Partials
    engine = llm.llm_engine
    try:
        with _every_step(engine, stream):
            _enqueue(llm, jobs, chats, prompts, max_tokens, chat_template, pending)
        while pending and engine.has_unfinished_requests():
            outputs = engine.step()
            if stream:
                _send_partial(outputs, pending, sent, send)
            for output in outputs:
                if not output.finished:
                    continue
                i, _ = pending.pop(output.request_id)
                completion = output.outputs[0]
                send(
                    Finished(
                        index=i,
                        text=completion.text,
                        tokens_in=len(output.prompt_token_ids or ()),
                        tokens_out=len(completion.token_ids),
                        finish_reason=completion.finish_reason,
                        seconds=time.monotonic() - started,
                        logprob=_mean_logprob(completion, jobs[i].logprobs),
                    )
                )
    except BaseException:
        _abort(engine, [rid for _, rid in pending.values()])
        raise
    if pending:
        raise RuntimeError(f"vLLM stopped with {len(pending)} request(s) of the batch unanswered")
    send(BatchDone(count=len(jobs)))


def _enqueue(
    llm,
    jobs: tuple[Job, ...],
    chats: list[int],
    prompts: list[int],
    max_tokens: list[int],
    chat_template: str | None,
    pending: dict[str, tuple[int, str]],
) -> None:
    """Add the batch's chats and prompts to vLLM's queue; ``pending`` maps their ids to indices."""
    if chats:
        ids = llm.enqueue_chat(
            [jobs[i].chat() for i in chats],
            [_sampling(jobs[i], max_tokens[i]) for i in chats],
            use_tqdm=False,
            chat_template=chat_template,
        )
        pending.update({_external_id(rid): (i, rid) for rid, i in zip(ids, chats, strict=True)})
    if prompts:
        texts = [jobs[i].prompt for i in prompts]
        ids = llm.enqueue(texts, [_sampling(jobs[i], max_tokens[i]) for i in prompts], use_tqdm=False)
        pending.update({_external_id(rid): (i, rid) for rid, i in zip(ids, prompts, strict=True)})


@contextmanager
def _every_step(engine, on: bool) -> Iterator[None]:
    """While on, requests added to ``engine`` report their text at every step, not only at the end.

    vLLM's offline ``LLM`` marks each request it adds as wanting its final output only
    (``RequestOutputKind.FINAL_ONLY``, vLLM 0.32); a streamed batch needs the text as it grows,
    so the engine's ``add_request`` switches them to ``CUMULATIVE`` (the whole text so far, at
    every step). The final output is the same either way."""
    if not on:
        yield
        return
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    add = engine.add_request

    def add_every_step(request_id, prompt, params, *args, **kwargs):
        if isinstance(params, SamplingParams):
            params.output_kind = RequestOutputKind.CUMULATIVE
        return add(request_id, prompt, params, *args, **kwargs)

    engine.add_request = add_every_step
    try:
        yield
    finally:
        del engine.add_request  # the class's own method again


def _send_partial(outputs, pending: dict[str, tuple[int, str]], sent: dict[int, str], send) -> None:
    """One ``Partial`` with what this step added to each unfinished request's text (vLLM's outputs
    hold the whole text so far); nothing if the step added none."""
    texts = []
    for output in outputs:
        entry = pending.get(output.request_id)
        if output.finished or entry is None:
            continue
        index = entry[0]
        text, before = output.outputs[0].text, sent.get(index, "")
        if len(text) > len(before) and text.startswith(before):
            texts.append((index, text[len(before) :]))
            sent[index] = text
    if texts:
        send(Partial(texts=tuple(texts)))


def _external_id(request_id: str) -> str:
    """The id vLLM reports on outputs for an id ``enqueue`` returned.

    ``enqueue`` returns the engine's internal id, the counter value it assigned plus ``-`` and a
    random suffix; outputs carry the counter value alone.
    """
    return request_id.split("-", 1)[0]


def _abort(engine, internal_ids: list[str]) -> None:
    """Drop what a failed batch left in the engine, so the next batch starts clean."""
    try:
        engine.abort_request(internal_ids, internal=True)
    except Exception:  # noqa: BLE001 - the engine may be dead; the batch has failed anyway
        traceback.print_exc()


def _engine_dead(exc: BaseException) -> bool:
    from vllm.v1.engine.exceptions import EngineDeadError

    return isinstance(exc, EngineDeadError)


class _Pipe:
    """The child's end of the pipe, safe to send on from the main thread and the engine watch."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message) -> None:
        with self._lock:
            self.conn.send(message)


def _watch_engine(pipe: _Pipe, stopping: threading.Event, poll_s: float = 1.0) -> None:
    """Report and exit if vLLM's engine process dies between or during batches.

    vLLM's client notices the death and shuts down, but a batch already waiting for output then
    waits forever (vLLM 0.32), so the death is watched here too.
    """
    import psutil

    me = psutil.Process()
    engines = [p for p in me.children() if "VLLM" in p.name() or "VLLM" in " ".join(p.cmdline())]

    def watch() -> None:
        while not stopping.wait(poll_s):
            for proc in engines:
                try:
                    alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    alive = False
                if not alive and not stopping.is_set():
                    print(f"coe error: vLLM's engine process {proc.pid} exited unexpectedly", flush=True)
                    try:
                        pipe.send(
                            Failed(kind=ErrorKind.ENGINE_DEAD, message=f"vLLM's engine process {proc.pid} exited")
                        )
                    finally:
                        _exit(1)

    threading.Thread(target=watch, name="engine-watch", daemon=True).start()


def serve(conn, config: WorkerConfig) -> None:
    """Child entry point: build the model, then answer commands until told to stop."""
    guard_group(config.parent_pid)  # first: vLLM's processes must start inside the guarded group
    _redirect_output(config.log_path)
    pipe = _Pipe(conn)
    try:
        llm, ready = build_llm(config)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as one line
        traceback.print_exc()
        kind = ErrorKind.NOT_FOUND if isinstance(exc, NotFound) else ErrorKind.LOAD
        pipe.send(Failed(kind=kind, message=str(exc) if kind is ErrorKind.NOT_FOUND else describe(exc)))
        _exit(1)
    stopping = threading.Event()
    _watch_engine(pipe, stopping)
    pipe.send(ready)
    code = 0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if isinstance(message, Stop):
            break
        if isinstance(message, Sleep | Wake):
            pipe.send(switch(llm, message, ready.sleep_mode))
            continue
        if not isinstance(message, Generate):
            pipe.send(Failed(kind=ErrorKind.GENERATE, message=f"unknown command {type(message).__name__}"))
            continue
        try:
            generate(llm, message.jobs, config.chat_template, config.source.max_model_len, pipe.send, message.stream)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            traceback.print_exc()
            if _engine_dead(exc):
                pipe.send(Failed(kind=ErrorKind.ENGINE_DEAD, message=describe(exc)))
                code = 1
                break
            pipe.send(Failed(kind=ErrorKind.GENERATE, message=describe(exc)))
    stopping.set()
    _shutdown(llm)
    conn.close()
    _exit(code)


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

        util._run_finalizers(0)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - only tidiness is at stake
        traceback.print_exc()


def _shutdown(llm: Any) -> None:
    """Stop vLLM's engine process explicitly rather than waiting for garbage collection."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort; the parent kills what is left
        traceback.print_exc()
