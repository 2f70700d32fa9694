"""The semantic cache: an earlier answer reused for a new question that means the same.

It stands in front of the pipeline: a door looks a batch's questions up (``look``), runs only
the misses through the one pipeline, and keeps their answers (``keep``). A question is answered
from the cache when an earlier one

- was asked under the same ``Scope`` (pool, policy, k, aggregation, max tokens, the encoder,
  and the conversation before the question: every field of the query but its text, id and
  options),
- has the same facts (``orchestrator.pipeline.facts``: numbers, number words, negations and
  options equal; entities each found in the other question),
- and an embedding whose cosine similarity to the new one is at least ``threshold``.

The scope and the exact facts make a bucket (a digest); the store (``stores.semantic``) keeps a
bucket's newest entries, so a lookup compares the new question with a few vectors only. The
closest entry that passes wins. A reused answer carries the new question's id and a trace note
(``SemanticNote``) saying it was reused and how close it was; answers with an error are never
kept, nor are reused ones (they are kept already).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from pydantic import ValidationError

from common.errors import BadInput
from common.query import Query, query_id
from orchestrator.pipeline.facts import Facts, facts_of
from orchestrator.pipeline.trace import Answer, SemanticNote
from orchestrator.stores.semantic import SemanticStore
from skills.embed import Embedder

__all__ = ["Looked", "Scope", "SemanticCache", "context_of"]

log = logging.getLogger(__name__)

ENTRY_FORMAT = "coe-semantic/1"


def context_of(query: Query) -> str:
    """What a question is asked in beside its text and options (a conversation's earlier turns,
    a system prompt: every other field of the query but its id), as a digest; empty for none."""
    rest = query.model_dump(mode="json", exclude={"id", "text", "options"})
    rest = {k: v for k, v in rest.items() if v not in (None, "", [], {})}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:32] if rest else ""


@dataclass(frozen=True)
class Scope:
    """How questions were asked: only answers given under the same scope are reused."""

    pool: str
    policy: str
    k: int
    aggregation: str = "synthesis"
    max_tokens: int | None = None


@dataclass(frozen=True)
class Looked:
    """One question looked up: its bucket, vector and facts (for ``keep``), and the reused answer
    with its similarity on a hit."""

    query: Query
    bucket: str
    vector: np.ndarray
    facts: Facts
    answer: Answer | None = None
    similarity: float | None = None

    @property
    def hit(self) -> bool:
        return self.answer is not None


class SemanticCache:
    """Answers by meaning (see the module), in ``store``, compared by ``embedder``'s vectors."""

    def __init__(self, embedder: Embedder, store: SemanticStore, threshold: float = 0.9) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise BadInput(f"the semantic cache's threshold must be in (0, 1], got {threshold!r}")
        self.embedder = embedder
        self.store = store
        self.threshold = float(threshold)

    def note(self, outcome: Literal["hit", "miss", "refused"], similarity: float | None = None) -> SemanticNote:
        """The trace's note of one lookup."""
        return SemanticNote(outcome=outcome, similarity=similarity, threshold=self.threshold)

    def _bucket(self, scope: Scope, query: Query, facts: Facts) -> str:
        key = {
            "scope": asdict(scope),
            "encoder": self.embedder.name,
            "context": context_of(query),
            "facts": facts.exact,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()

    def prepare(self, queries: Sequence[Query], scope: Scope) -> list[Looked]:
        """Each question's bucket, vector and facts, without looking anything up."""
        if not queries:
            return []
        vectors = np.asarray(self.embedder.embed([q.text for q in queries]), dtype=np.float32)
        out = []
        for query, vector in zip(queries, vectors, strict=True):
            facts = facts_of(query.text, query.options)
            out.append(Looked(query, self._bucket(scope, query, facts), vector, facts))
        return out

    def look(self, queries: Sequence[Query], scope: Scope) -> list[Looked]:
        """Each question with its reused answer where the cache holds one close enough."""
        looked = self.prepare(queries, scope)
        return [self._best(one) for one in looked]

    def _best(self, one: Looked) -> Looked:
        best: tuple[float, Answer] | None = None
        for raw in self.store.entries(one.bucket):
            entry = _decode(raw, one.vector.shape[0])
            if entry is None:
                continue
            vector, entities, words, answer = entry
            if not one.facts.entities_agree(entities, words):
                continue
            similarity = float(np.dot(one.vector, vector))
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, answer)
        if best is None:
            return one
        similarity, answer = best
        note = self.note("hit", round(similarity, 4))
        trace = answer.trace.model_copy(update={"question_id": one.query.id, "semantic_cache": note})
        reused = answer.model_copy(update={"question_id": one.query.id, "trace": trace})
        return Looked(one.query, one.bucket, one.vector, one.facts, reused, similarity)

    def keep(self, looked: Sequence[Looked], answers: Sequence[Answer]) -> int:
        """Keep each answered question's answer (not failed or reused ones); how many were kept."""
        kept = 0
        for one, answer in zip(looked, answers, strict=True):
            if answer.error or answer.trace.reused:
                continue
            entry = {
                "format": ENTRY_FORMAT,
                "vector": base64.b64encode(one.vector.astype("<f4").tobytes()).decode("ascii"),
                "entities": list(one.facts.entities),
                "words": sorted(one.facts.words),
                "answer": answer.model_dump(mode="json"),
            }
            self.store.add(one.bucket, query_id(one.query.text, one.query.options), json.dumps(entry))
            kept += 1
        return kept


def _decode(raw: str, width: int) -> tuple[np.ndarray, tuple[str, ...], frozenset[str], Answer] | None:
    """An entry's vector, entities, words and answer; None (logged) when it is not a usable entry."""
    try:
        entry = json.loads(raw)
        if entry.get("format") != ENTRY_FORMAT:
            raise ValueError(f"format {entry.get('format')!r}")
        vector = np.frombuffer(base64.b64decode(entry["vector"]), dtype="<f4")
        if vector.shape != (width,) or not np.isfinite(vector).all():
            raise ValueError(f"a vector of {vector.shape[0]} numbers, not {width}")
        entities = tuple(str(e) for e in entry["entities"])
        words = frozenset(str(w) for w in entry["words"])
        answer = Answer.model_validate(entry["answer"])
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        log.warning("semantic cache: an entry was ignored: %s", " ".join(str(exc).split())[:200])
        return None
    return vector.astype(np.float32), entities, words, answer
