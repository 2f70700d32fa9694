"""VLLMEngine streaming on real vLLM and the packaged SmolLM2: deltas per engine step that join
to each final text exactly (text vLLM held back included), and the same texts as a batch that
does not stream."""

from __future__ import annotations

from pathlib import Path

from batching.engines.vllm_engine import VLLMEngine
from common.requests import Generation, Request, Sampling

from .test_vllm_engine import smollm2


def test_a_streamed_batch_hands_out_each_text_as_it_grows(cache_dir: Path) -> None:
    # a stop string that never comes: vLLM holds back the text that could be its start until the
    # request ends, so the end of each text arrives only with its result
    spec = smollm2().model_copy(update={"sampling": Sampling(max_tokens=24, stop=("unicorn wizard",))})
    engine = VLLMEngine(spec, cache_dir=cache_dir)
    requests = [
        Request.user("colours", "Name three colours of the rainbow.", max_tokens=24),
        Request.user("story", "Tell me a short story about a cat.", max_tokens=32),
    ]
    events: list[tuple[str, int, str | Generation]] = []
    engine.load()
    try:
        streamed = engine.generate(
            requests,
            on_result=lambda i, g: events.append(("result", i, g)),
            on_delta=lambda i, text: events.append(("delta", i, text)),
        )
        plain = engine.generate(requests)
    finally:
        engine.unload()
    for i, generation in enumerate(streamed):
        mine = [(kind, value) for kind, j, value in events if j == i]
        deltas = [value for kind, value in mine if kind == "delta"]
        assert [kind for kind, _ in mine] == ["delta"] * len(deltas) + ["result"]  # every delta before the result
        assert generation.ok and generation.tokens_out > 4
        assert len(deltas) >= max(2, generation.tokens_out // 2) and all(deltas)  # about one per step
        assert "".join(deltas) == generation.text  # type: ignore[arg-type]
    assert [g.text for g in plain] == [g.text for g in streamed]  # greedy: streaming changes nothing
    assert [g.tokens_out for g in plain] == [g.tokens_out for g in streamed]
