"""The facts of a question that a paraphrase keeps and a different question changes: its
numbers, number words, negations, answer options and named entities. The semantic cache
(``orchestrator.pipeline.semantic``) reuses an answer only for a question whose facts match
exactly, however close the embeddings are: "12 apples" never answers "13 apples".

One small rule set:

- numbers: every number written with digits, in order (``common.numbers.numbers_in``:
  ``2,125``, ``-0.5``, ``3/4``), as their values; number words (``twelve``, ``third``,
  ``half``, ``dozen``) in order, as words (``twelve`` and ``12`` are not taken as equal);
- negations: how many of ``not``, ``no``, ``never``, ``none``, ``nor``, ``neither``,
  ``without``, ``except``, ``cannot`` and ``...n't`` the question holds;
- options: the answer options, in order, with runs of white space made one space;
- entities: spans of adjacent capitalised words (``Supreme Court``, ``DNA``, ``iPhone``),
  lower-cased, leaving out English stop words (scikit-learn's list) and the words that open
  questions and instructions (``Explain``, ``Calculate``, ...). Capitals are a weak sign in
  lower-cased text, so entities are compared by containment, not equality: every word of each
  question's entities must occur in the other question (in any case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from common.numbers import format_number, numbers_in

__all__ = ["Facts", "facts_of"]

NUMBER_WORDS = frozenset(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
    thousand million billion trillion first second third fourth fifth sixth seventh eighth ninth tenth
    once twice thrice half halves quarter quarters double triple dozen dozens""".split()
)
NEGATIONS = frozenset("not no never none nor neither without except cannot".split())
OPENERS = frozenset(
    """explain describe calculate compute determine identify list give tell suppose consider given assume
    let select choose answer define evaluate estimate solve show state write question discuss compare
    summarize summarise outline""".split()
)
"""Words that open questions and instructions: capitalised there, never an entity."""

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE)
_GAP = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Facts:
    numbers: tuple[str, ...]
    number_words: tuple[str, ...]
    negations: int
    options: tuple[str, ...]
    entities: tuple[str, ...]
    """Lower-cased spans, in order."""
    words: frozenset[str]
    """Every word of the question, lower-cased (what another question's entities are looked up in)."""

    @property
    def exact(self) -> tuple[object, ...]:
        """The facts that must be equal (entities are compared by ``entities_agree``)."""
        return (self.numbers, self.number_words, self.negations, self.options)

    def entities_agree(self, entities: tuple[str, ...], words: frozenset[str]) -> bool:
        """Whether another question with ``entities`` and ``words`` names the same things: each
        side's entity words all occur among the other side's words."""
        mine = {w for span in self.entities for w in span.split()}
        theirs = {w for span in entities for w in span.split()}
        return mine <= words and theirs <= self.words


@cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def facts_of(text: str, options: tuple[str, ...] | list[str] = ()) -> Facts:
    """The facts of a question (see the module)."""
    stop = _stop_words()
    numbers = tuple(format_number(value) for value in numbers_in(text))
    number_words: list[str] = []
    negations = 0
    spans: list[list[str]] = []
    last_end = -1
    words = set()
    for match in _WORD.finditer(text):
        word = match.group()
        lower = word.lower().replace("\u2019", "'")
        words.add(lower)
        if lower in NUMBER_WORDS:
            number_words.append(lower)
        if lower in NEGATIONS or lower.endswith("n't"):
            negations += 1
        named = any(c.isupper() for c in word) and lower not in stop and lower not in OPENERS
        named = named and lower not in NUMBER_WORDS and lower not in NEGATIONS
        if named:
            if spans and text[last_end : match.start()].strip() == "":
                spans[-1].append(lower)  # the next word of the same span
            else:
                spans.append([lower])
            last_end = match.end()
    kept = tuple(_GAP.sub(" ", option.strip()) for option in options)
    return Facts(
        numbers=numbers,
        number_words=tuple(number_words),
        negations=negations,
        options=kept,
        entities=tuple(" ".join(span) for span in spans),
        words=frozenset(words),
    )
