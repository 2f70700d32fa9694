"""Reading numbers and boxed answers out of text: the parsing the answer judge
(``common.answers``) and the extractors (``eval.extract``) share.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(
    r"(?<![\w.])(-?\d+/\d+(?![\d/])|-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\d|,\d)|-?\.\d+)"
)
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text``, in order: ``2,125``, ``-0.5``, ``1e-3``, ``3/4``.
    Currency signs, units and words around them are ignored."""
    values = []
    for raw in _NUMBER.findall(text.translate(_MINUS).replace("\\$", "$")):
        if "/" in raw:
            top, bottom = raw.split("/")
            if int(bottom) == 0:
                continue
            values.append(int(top) / int(bottom))
        else:
            value = float(raw.replace(",", ""))
            if math.isfinite(value):
                values.append(value)
    return values


def format_number(value: float) -> str:
    """``18.0`` -> ``18``; other values in Python's shortest round-trip form."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` in order, braces nested to any depth (escaped
    braces ``\\{`` do not count); an unclosed box is skipped, an empty one too."""
    found = []
    for match in _BOXED_START.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            char = text[i]
            if char == "\\":
                i += 2
                continue
            depth += 1 if char == "{" else -1 if char == "}" else 0
            i += 1
        if depth == 0 and (inside := text[match.end() : i - 1].strip()):
            found.append(inside)
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last closed, non-empty ``\\boxed{}``; None when there is none."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


_LATEX_FRACTION = re.compile(r"^(-?)\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}$")
_CURRENCY = "$\u20ac\u00a3\u00a5\u20b9"
_NO_CURRENCY = str.maketrans("", "", _CURRENCY + " ")
_PLAIN_NUMBER = re.compile(
    r"^[" + _CURRENCY + r"]?\s*(-?\s*[" + _CURRENCY + r"]?\s*"
    r"(?:\d+/\d+|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+))"
    r"\s*(?:%|\\%|percent|[A-Za-z\u00b0\u00b5]{1,12}(?:\^?\d)?(?:/[A-Za-z]{1,6})?)?\.?$"
)


def plain_number(text: str) -> float | None:
    """The value of a text that *is* one number, written any usual way: ``7425``, ``7425.00``,
    ``$7,425.00``, ``-3``, ``3/4``, ``\\frac{3}{4}``, ``50%`` (50: the sign is a unit), ``12 km``.
    None for anything else (a sentence, two numbers, a formula)."""
    text = text.strip().translate(_MINUS).replace("\\$", "$").replace("\\!", "").replace("\\,", "")
    if len(text) > 2 and text.startswith("$") and text.endswith("$"):  # LaTeX math delimiters
        text = text[1:-1].strip()
    fraction = _LATEX_FRACTION.match(text)
    if fraction:
        sign, top, bottom = fraction.groups()
        if int(bottom) == 0:
            return None
        return (-1 if sign else 1) * int(top) / int(bottom)
    match = _PLAIN_NUMBER.match(text)
    if not match:
        return None
    values = numbers_in(match.group(1).translate(_NO_CURRENCY))
    return values[0] if len(values) == 1 else None
