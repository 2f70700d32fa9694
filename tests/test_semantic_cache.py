"""The semantic cache (orchestrator.pipeline.semantic) and its facts (orchestrator.pipeline.facts):
pairs of questions that must or must not share an answer, with the real encoder (the packaged
all-MiniLM-L6-v2, run by ONNX Runtime) and a real SQLite store; the cache's bookkeeping with the
hashing embedder."""

from __future__ import annotations

import json

import pytest

from aggregators import AggregationResult
from common.errors import BadInput
from common.query import Query
from orchestrator.pipeline.facts import facts_of
from orchestrator.pipeline.semantic import Scope, SemanticCache, context_of
from orchestrator.pipeline.trace import Answer, Trace
from orchestrator.stores.semantic import open_semantic_store
from router import ExpertChoice, RouteDecision
from skills import HashingEmbedder, make_embedder

SCOPE = Scope("default@1", "all", 2)

SAME = [
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("What is the capital of France?", "what is the capital of france"),
    ("Who wrote the novel Pride and Prejudice?", "Who is the author of the novel Pride and Prejudice?"),
    ("I have 12 apples and eat 3. How many are left?", "I have 12 apples and I eat 3. How many are left?"),
    ("Explain how vaccines train the immune system.", "Explain how a vaccine trains the immune system."),
]
DIFFERENT = [
    ("I have 12 apples and eat 3. How many are left?", "I have 13 apples and eat 3. How many are left?"),
    ("I have twelve apples.", "I have thirteen apples."),
    ("Which of these is not a mammal?", "Which of these is a mammal?"),
    ("What is the capital of France?", "What is the capital of Germany?"),
    ("What is the capital of France?", "What is the capital of France and of Spain?"),
    ("Convert 3/4 to a decimal.", "Convert 3/5 to a decimal."),
]


@pytest.mark.parametrize(("first", "second"), SAME)
def test_paraphrases_keep_their_facts(first, second):
    a, b = facts_of(first), facts_of(second)
    assert a.exact == b.exact and a.entities_agree(b.entities, b.words)


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_changed_facts_are_seen(first, second):
    a, b = facts_of(first), facts_of(second)
    assert a.exact != b.exact or not a.entities_agree(b.entities, b.words)


def test_the_rule_set_reads_numbers_words_negations_options_and_entities():
    facts = facts_of(
        "Explain why the New York Times didn't print 2,125 copies on the third day, not DNA.",
        ["  yes ", "no\tway"],
    )
    assert facts.numbers == ("2125",)
    assert facts.number_words == ("third",)
    assert facts.negations == 2  # didn't, not
    assert facts.options == ("yes", "no way")
    assert facts.entities == ("new york times", "dna")  # "Explain" opens the question; "the" is a stop word
    assert facts_of("Pick one", ["A", "B"]).exact != facts_of("Pick one", ["A", "C"]).exact


def entry_answer(text: str, qid: str = "q-old", error: str | None = None) -> Answer:
    choice = ExpertChoice(expert="smollm2", score=1.0)
    route = RouteDecision(question_id=qid, policy="all", skills={"general": 1.0}, experts=(choice,), confidence=1.0)
    aggregation = AggregationResult(text=text, method="majority", choice=None, confidence=1.0)
    trace = Trace(
        question_id=qid,
        pool="default",
        route=route,
        experts=(),
        aggregator="majority",
        aggregation=aggregation,
    )
    return Answer(question_id=qid, text=text, trace=trace, error=error)


@pytest.fixture(scope="module")
def encoder():
    """The real encoder, as the service makes it (exported once into the user's cache)."""
    return make_embedder("all-MiniLM-L6-v2-onnx")


def test_with_the_real_encoder_a_paraphrase_hits_and_a_changed_number_misses(tmp_path, encoder):
    cache = SemanticCache(encoder, open_semantic_store(tmp_path / "s.sqlite"), threshold=0.9)
    asked = Query(text="I have 12 apples and eat 3 of them. How many apples are left?")
    (looked,) = cache.look([asked], SCOPE)
    assert not looked.hit
    assert cache.keep([looked], [entry_answer("9 apples", asked.id)]) == 1
    again = Query(text="I have 12 apples and I eat 3 of them. How many apples are left?", id="mine")
    changed = Query(text="I have 13 apples and eat 3 of them. How many apples are left?")
    hit, miss = cache.look([again, changed], SCOPE)
    assert hit.hit and hit.answer is not None and hit.answer.text == "9 apples"
    assert hit.answer.question_id == "mine" and hit.answer.trace.question_id == "mine"
    note = hit.answer.trace.semantic_cache
    assert note is not None and note.outcome == "hit" and note.similarity is not None and note.similarity >= 0.9
    assert hit.answer.trace.reused
    assert not miss.hit
    # the same question asked another way (another policy, k, or conversation) is not answered
    assert not cache.look([again], Scope("default@1", "topk", 2))[0].hit
    assert not cache.look([again], Scope("default@2", "all", 2))[0].hit


def test_bookkeeping_with_the_hashing_embedder(tmp_path):
    store = open_semantic_store(tmp_path / "s.sqlite")
    cache = SemanticCache(HashingEmbedder(64), store, threshold=0.99)
    query = Query(text="What colour is the sky on Mars?")
    looked = cache.look([query], SCOPE)
    failed, answered = entry_answer("", query.id, error="every expert failed"), entry_answer("Butterscotch")
    assert cache.keep(looked, [failed]) == 0  # a failed answer is never kept
    assert cache.keep(looked, [answered]) == 1
    (hit,) = cache.look([query], SCOPE)
    assert hit.answer is not None and hit.answer.text == "Butterscotch"
    assert cache.keep([hit], [hit.answer]) == 0  # nor a reused one
    # an unreadable entry, or one of another encoder's width, is passed over
    store.add(looked[0].bucket, "bad", "{not json")
    narrow = {"format": "coe-semantic/1", "vector": "AAAAAA==", "entities": [], "words": []}
    store.add(looked[0].bucket, "narrow", json.dumps(narrow))
    assert cache.look([query], SCOPE)[0].answer is not None
    # another encoder has buckets of its own
    other = SemanticCache(HashingEmbedder(128), store, threshold=0.99)
    assert not other.look([query], SCOPE)[0].hit
    for bad in (0, 1.5, -0.1, True, "0.9"):
        with pytest.raises(BadInput, match="threshold"):
            SemanticCache(HashingEmbedder(64), store, threshold=bad)


def test_the_conversation_context_is_every_other_field_of_the_query():
    assert context_of(Query(text="a")) == "" == context_of(Query(text="b", options=("x", "y"), id="i"))
