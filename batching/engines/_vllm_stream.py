"""Streaming a batch from the vLLM child (``_vllm_worker``): requests that report their text at
every engine step, and one ``Partial`` message per step with what it added."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from batching.engines._vllm_protocol import Partial


@contextmanager
def every_step(engine, on: bool) -> Iterator[None]:
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


def send_partial(outputs, pending: dict[str, tuple[int, str]], sent: dict[int, str], send) -> None:
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
