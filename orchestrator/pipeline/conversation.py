"""Chat turns in the pipeline: what each model is shown of a conversation, and session affinity.

A chat turn is a ``Query`` with a ``conversation`` (``common.conversation``). The pipeline asks
it as any question (its text is the last user message; the prompt, the judge and the answer
format are a plain question's), and adds three things here:

- **routing in context**: ``contexts`` gives the router each turn's earlier questions
  (``Router.route``'s ``contexts``), so a follow-up is read with its subject;
- **what each model is shown**: ``shown`` fits the earlier turns to each expert's context
  (``ExpertSpec.context``), cutting the oldest exchanges first and never the question or the
  user's system message; the aggregator's are fitted the same way when its prompt is written
  (``aggregators.synthesis``: the experts' answers are known then; ``aggregator_context``). The
  expert tasks and the aggregator's request put them before the prompt, in the model's own chat
  template (``batching.engines.base.chat_messages`` joins the user's system message to the
  model's own instructions);
- **session affinity** (``Sessions``): a conversation named by its caller (``session``), or else
  recognised by its earlier turns, keeps the experts it was given (``router.affinity``) while its
  skills stay within the pool's ``sessions.shift``; its state lives in the session store
  (``orchestrator.stores.sessions``) and is written only once a turn is answered.

Session keys are digests: of the pool and the session's name, or of the pool and the whole
conversation so far (whitespace aside), so the next turn, which sends this one's question and
answer among its earlier turns, finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import ValidationError

from aggregators import SynthesisOptions
from batching.spec import ExpertSpec
from common.conversation import PER_MESSAGE, estimate_tokens, fit
from common.query import Query
from common.requests import Message
from orchestrator.pipeline.items import squash
from orchestrator.stores.sessions import SessionStore
from router import Affinity, Anchor, RouteDecision, keep_or_move

log = logging.getLogger(__name__)

SessionKey = tuple[str, Literal["session", "turns"]]


def contexts(queries: Sequence[Query]) -> list[tuple[str, ...]]:
    """Per query, the earlier questions its skills are read with, oldest first (none for a plain
    question or a conversation's first)."""
    return [q.conversation.earlier_questions if q.conversation is not None else () for q in queries]


def _own_tokens(spec: ExpertSpec) -> int:
    """What a model's own instructions take of its context."""
    return estimate_tokens(spec.system_prompt) + PER_MESSAGE if spec.system_prompt else 0


def shown(
    query: Query, decision: RouteDecision, prompt: str, specs: Mapping[str, ExpertSpec]
) -> dict[str, tuple[Message, ...]]:
    """Expert -> the earlier turns of ``query``'s conversation it is shown, for every expert the
    decision may ask (its ladder): the newest that fit beside its instructions, the prompt and
    the answer it writes."""
    if query.conversation is None or not query.conversation.history:
        return {}
    out: dict[str, tuple[Message, ...]] = {}
    for choice in decision.all_experts:
        spec = specs[choice.expert]
        fixed = _own_tokens(spec) + estimate_tokens(prompt) + PER_MESSAGE + spec.sampling.max_tokens
        out[choice.expert] = fit(query.conversation.history, fixed, spec.context)[0]
    return out


def aggregator_context(spec: ExpertSpec, max_tokens: int | None, synthesis: SynthesisOptions) -> tuple[int | None, int]:
    """The aggregator's context and what its call needs besides its prompt and the earlier turns
    (``aggregators.SynthesisJob.context``): its instructions and the most it may write."""
    return spec.context, _own_tokens(spec) + (max_tokens or synthesis.max_tokens or spec.sampling.max_tokens)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _turns_key(pool: str, messages: Sequence[tuple[str, str]]) -> str:
    canonical = json.dumps([[role, squash(content)] for role, content in messages], ensure_ascii=False)
    return _digest(pool, "turns", canonical)


def session_key(pool: str, query: Query) -> SessionKey | None:
    """Where ``query``'s session state is read: its named session's key, or (unnamed) the key of
    its earlier turns; None for a plain question, and for a first turn nobody named (nothing
    earlier to recognise)."""
    conversation = query.conversation
    if conversation is None:
        return None
    if conversation.session is not None:
        return _digest(pool, "session", conversation.session), "session"
    if not conversation.turns:
        return None
    return _turns_key(pool, [(m.role, m.content) for m in conversation.history]), "turns"


def next_key(pool: str, query: Query, answer: str) -> str | None:
    """Where the state is written once ``query`` is answered with ``answer``: its named session's
    key, or the key its next turn will be recognised by (the conversation so far, this question
    and its answer included); None for a plain question."""
    conversation = query.conversation
    if conversation is None:
        return None
    if conversation.session is not None:
        return _digest(pool, "session", conversation.session)
    turns = [(m.role, m.content) for m in conversation.history]
    return _turns_key(pool, [*turns, ("user", query.text), ("assistant", answer)])


class Sessions:
    """Session affinity over a session store, for one pool."""

    def __init__(self, store: SessionStore, pool: str, threshold: float, experts: Sequence[str]) -> None:
        self.store = store
        self.pool = pool
        self.threshold = threshold
        self.experts = frozenset(experts)

    def recall(self, key: str) -> Anchor | None:
        """The anchor kept under ``key``; None when there is none (or it cannot be read: logged)."""
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            return Anchor.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("session state %s... ignored: not an anchor (%d problem(s))", key[:12], exc.error_count())
            return None

    def decide(
        self, query: Query, decision: RouteDecision, k: int | None
    ) -> tuple[RouteDecision, Affinity | None, Anchor | None]:
        """``decision`` under affinity for a chat turn, the trace's record and the anchor to keep;
        a plain question's decision unchanged (no record, nothing to keep)."""
        if query.conversation is None:
            return decision, None, None
        found = session_key(self.pool, query)
        named_by: Literal["session", "turns"] = found[1] if found is not None else "turns"
        anchor = self.recall(found[0]) if found is not None else None
        return keep_or_move(decision, anchor, threshold=self.threshold, k=k, experts=self.experts, named_by=named_by)

    def remember(self, query: Query, answer: str, anchor: Anchor) -> None:
        """Keep ``anchor`` for the next turn of ``query``'s conversation, answered with ``answer``."""
        key = next_key(self.pool, query, answer)
        if key is not None:
            self.store.put(key, anchor.model_dump_json())


def cut_counts(query: Query, shown: Mapping[str, int]) -> dict[str, int]:
    """Model -> how many of the conversation's earlier messages it was not shown, from how many it
    was (``shown``); models shown them all are left out."""
    whole = len(query.conversation.history) if query.conversation is not None else 0
    return {model: whole - n for model, n in shown.items() if whole - n}


__all__ = ["Sessions", "aggregator_context", "contexts", "cut_counts", "next_key", "session_key", "shown"]
