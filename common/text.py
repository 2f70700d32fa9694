"""Plain text helpers shared by the layers that read model outputs."""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def strip_thinking(text: str) -> str:
    """Drop ``<think>...</think>`` blocks (and an unclosed leading one's opening tag)."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.split("</think>")[-1]
    return text.strip()
