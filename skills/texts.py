"""What the embedders take: a list of texts, each checked."""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import BadInput


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, each checked to be a string (one string alone is refused)."""
    if isinstance(texts, str):
        raise BadInput("embed() takes a list of texts, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise BadInput(f"text {i} to embed is {type(text).__name__}, not str")
    return out


__all__ = ["check_texts"]
