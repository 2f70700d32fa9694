"""The parts of a conversation, one at a time: its turns in order (``common.conversation``), the
cut of the oldest turns to fit a context, messages as callers send them (``pipeline.turns``),
routing in context and session affinity (``router``), the session stores (SQLite and Redis, one
suite), and a plain question's ids and request keys, which must not change."""

from __future__ import annotations

import time

import pytest

from batching import FakeEngine
from batching.engines.base import chat_messages, completion_prompt
from batching.runstore import request_key
from common.conversation import Conversation, estimate_tokens, fit, message_tokens
from common.errors import BadInput, ConfigError, TooLarge, Unsupported
from common.query import Query
from common.requests import Message, Request
from orchestrator import Orchestrator, load_settings
from orchestrator.pipeline.conversation import next_key, session_key
from orchestrator.pipeline.turns import read_messages
from orchestrator.pools.settings import shipped_pool
from orchestrator.stores import SessionStore, open_session_store
from router import Anchor, ExpertChoice, RouteDecision, in_context, keep_or_move, skill_shift
from tests.redis_server import redis_server  # noqa: F401 - a fixture

LIMITS = {"max_question_chars": 200, "max_conversation_chars": 2_000}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def turns(n: int, words: int = 30) -> tuple[Message, ...]:
    """``n`` exchanges of ``words`` words each way."""
    out = []
    for i in range(n):
        out.append(Message(role="user", content=f"question {i} " + "word " * words))
        out.append(Message(role="assistant", content=f"answer {i} " + "word " * words))
    return tuple(out)


# -- a plain question is what it was ------------------------------------------------------------


def test_a_plain_question_keeps_its_id_and_its_request_keys(tmp_path):
    """Pinned: the digests every earlier run and cache entry were stored under (measured on the
    code before conversations existed)."""
    assert Query(text="Is water wet?").id == "q-a75a8146d0933d74"
    assert Query(text="Is water wet?", conversation=Conversation()).id == "q-a75a8146d0933d74"
    core = load_settings(pool=shipped_pool("default"), runs_dir=tmp_path / "runs", policy="all")
    coe = Orchestrator(core, engine_factory=lambda spec, cpus=None: FakeEngine(spec))
    tasks, _ = coe.tasks(["Is water wet?"])
    keys = {t.id: request_key(coe.pool.spec(t.model), t.request)[:16] for t in tasks if t.request is not None}
    assert keys == {
        "q-a75a8146d0933d74/expert/gemma3": "43daa05314d83e1b",
        "q-a75a8146d0933d74/expert/smollm2": "2651c693a29d2a0d",
    }


def test_earlier_turns_make_another_id():
    one = Query(text="And its moons?", conversation=Conversation(history=turns(1)))
    other = Query(text="And its moons?", conversation=Conversation(history=turns(2)))
    assert len({one.id, other.id, Query(text="And its moons?").id}) == 3


# -- order, size and the cut --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "param", "error"),
    [
        ([], "messages", BadInput),
        ([assistant("Hi."), user("Hi?")], "messages[0].role", BadInput),
        ([user("a"), user("b")], "messages[1].role", BadInput),
        ([user("a"), assistant("b")], "messages[1].role", BadInput),
        ([user("a"), {"role": "system", "content": "late"}, user("b")], "messages[1].role", BadInput),
        ([{"role": "system", "content": "Be brief."}], "messages", BadInput),
        ([user("  ")], "messages[0].content", BadInput),
        ([{"role": "user", "content": None}], "messages[0].content", BadInput),
        ([{"role": "robot", "content": "beep"}], "messages[0].role", BadInput),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], None, Unsupported),
        ([{"role": "tool", "content": "42"}, user("a")], "messages[0].role", Unsupported),
        ([user("a"), {"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}, user("b")], None, Unsupported),
        ([user("x" * 201)], "messages[0].content", TooLarge),
        ([user("x" * 150), assistant("y" * 1_900), user("z")], "messages", TooLarge),
    ],
)
def test_bad_conversations_are_one_error_naming_the_field(messages, param, error):
    with pytest.raises(error) as caught:
        read_messages(messages, **LIMITS)
    if param is not None:
        assert caught.value.param == param and str(caught.value).startswith(param)
    assert "\n" not in str(caught.value)


def test_system_messages_first_are_one_and_the_last_user_message_is_the_question():
    query = read_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use SI units."},
            user("My car weighs 1.2 tonnes."),
            assistant("Noted."),
            {"role": "user", "content": [{"type": "text", "text": "How much"}, {"type": "text", "text": "in kg?"}]},
        ],
        session="s1",
        **LIMITS,
    )
    assert query.text == "How much\nin kg?"
    assert query.conversation is not None and query.conversation.session == "s1"
    assert [m.role for m in query.conversation.history] == ["system", "user", "assistant"]
    assert query.conversation.history[0].content == "Be brief.\n\nUse SI units."
    assert query.conversation.earlier_questions == ("My car weighs 1.2 tonnes.",)


def test_the_cut_drops_the_oldest_exchanges_keeps_the_system_message_and_fits():
    system = (Message(role="system", content="Answer in French."),)
    history = system + turns(6)
    kept, cut = fit(history, fixed_tokens=150, context_tokens=400)
    assert 0 < cut < 12 and cut % 2 == 0
    assert kept[0] == system[0] and kept[1:] == history[1 + cut :]  # the newest turns, user first
    budget = int(400 * 0.9) - 150
    assert message_tokens(kept) <= budget < message_tokens(system + history[1 + cut - 2 :])  # as many as fit
    assert fit(history, 150, None) == (history, 0)  # no known limit: nothing cut
    assert fit(history, 10_000, 400) == (system, 12)  # nothing fits: only the system message stays


def test_the_token_estimate_counts_what_tokenizers_split():
    assert estimate_tokens("") == 0
    assert estimate_tokens("12345") == 5  # digit by digit
    assert estimate_tokens("é") == 2  # a byte each outside ASCII
    assert estimate_tokens("international") == 4
    assert estimate_tokens("a\nb") == 3


def test_the_expert_instructions_and_the_users_system_message_are_one():
    request = Request(
        id="t",
        messages=(Message(role="system", content="Answer in French."), Message(role="user", content="Hi?")),
    )
    assert chat_messages(request, "You are a chemist.") == [
        {"role": "system", "content": "You are a chemist.\n\nAnswer in French."},
        {"role": "user", "content": "Hi?"},
    ]
    assert chat_messages(request, None)[0]["content"] == "Answer in French."
    assert completion_prompt(request, "You are a chemist.").startswith("You are a chemist.\n\nAnswer in French.")


# -- routing in context and affinity ------------------------------------------------------------


def test_in_context_mixes_each_question_with_the_reading_before_it():
    chemistry, law = {"chemistry": 1.0}, {"law": 1.0}
    assert in_context(law, [], 0.5) == law
    assert in_context(law, [chemistry], 0.5) == pytest.approx({"law": 0.5, "chemistry": 0.5})
    assert in_context(law, [chemistry, law], 0.5) == pytest.approx({"law": 0.75, "chemistry": 0.25})
    assert in_context({}, [chemistry], 0.5) == chemistry  # a question without skills reads its context
    with pytest.raises(BadInput):
        in_context(law, [chemistry], 1.0)


def test_skill_shift_is_the_total_variation_distance():
    assert skill_shift({"a": 2.0}, {"a": 1.0}) == 0.0
    assert skill_shift({"a": 1.0}, {"b": 1.0}) == 1.0
    assert skill_shift({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(0.5)
    assert skill_shift({}, {}) == 0.0 and skill_shift({}, {"a": 1.0}) == 1.0


def decision(skills: dict[str, float], *experts: str, policy: str = "topk") -> RouteDecision:
    chosen = tuple(ExpertChoice(expert=e, score=0.5) for e in experts)
    return RouteDecision(skills=skills, experts=chosen, confidence=0.5, policy=policy)


def test_affinity_keeps_until_the_skills_move_past_the_threshold():
    pool = {"a", "b", "c"}
    first = decision({"chemistry": 0.9, "physics": 0.1}, "a", "b")
    made, record, anchor = keep_or_move(first, None, threshold=0.3, k=2, experts=pool, named_by="session")
    assert made == first and record.outcome == "new" and anchor == Anchor(decision=first, k=2)
    near = decision({"chemistry": 0.7, "physics": 0.3}, "b", "c")
    made, record, kept_anchor = keep_or_move(near, anchor, threshold=0.3, k=2, experts=pool, named_by="session")
    assert made.expert_names == ["a", "b"] and made.skills == near.skills  # its experts, the new skills
    assert record.outcome == "kept" and record.why.startswith("kept") and record.shift == pytest.approx(0.2)
    assert kept_anchor == anchor  # a kept turn does not move the anchor: drift adds up
    far = decision({"law": 1.0}, "c", "a")
    made, record, moved_anchor = keep_or_move(far, anchor, threshold=0.3, k=2, experts=pool, named_by="turns")
    assert made == far and record.outcome == "moved" and record.named_by == "turns"
    assert record.why.startswith("moved, because the skills moved by 1.00") and "law 0.00 -> 1.00" in record.why
    assert moved_anchor.decision == far
    other_k = keep_or_move(near, anchor, threshold=0.3, k=3, experts=pool, named_by="session")[1]
    assert other_k.outcome == "moved" and "k=3" in other_k.why
    gone = keep_or_move(near, anchor, threshold=0.3, k=2, experts={"b", "c"}, named_by="session")[1]
    assert gone.outcome == "moved" and "a left the pool" in gone.why


def test_session_keys_name_a_session_or_the_turns_so_far():
    first = read_messages([user("Which planet is largest?")], **LIMITS)
    assert session_key("p", first) is None  # nobody named it and nothing came before
    after = next_key("p", first, "Jupiter.")
    second = read_messages([user("Which planet is largest?"), assistant("Jupiter."), user("Its moons?")], **LIMITS)
    assert session_key("p", second) == (after, "turns")  # the next turn finds what the first kept
    spaced = read_messages([user("Which  planet is largest?"), assistant(" Jupiter."), user("x")], **LIMITS)
    assert session_key("p", spaced) == (after, "turns")  # whitespace aside
    assert session_key("other-pool", second) != (after, "turns")
    named = read_messages([user("Hi?")], session="alice", **LIMITS)
    assert session_key("p", named) == (next_key("p", named, "anything"), "session")
    assert session_key("p", Query(text="plain")) is None and next_key("p", Query(text="plain"), "x") is None


# -- the session stores -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("redis_server").url


def test_session_state_round_trips_is_replaced_and_expires(target):
    store = open_session_store(target, ttl_s=0.5)
    assert isinstance(store, SessionStore)
    assert store.get("k") is None
    store.put("k", '{"a": 1}')
    store.put("k", '{"a": 2}')
    again = open_session_store(target, ttl_s=0.5)  # another replica, or a restart, sees it
    assert again.get("k") == '{"a": 2}'
    time.sleep(0.7)
    assert store.get("k") is None and again.get("k") is None
    store.close()
    again.close()


def test_session_state_shares_the_sqlite_file_with_the_generation_cache(tmp_path):
    from common.requests import Generation
    from orchestrator.stores import SQLiteGenerationStore

    path = tmp_path / "store.sqlite"
    sessions = open_session_store(path, ttl_s=60)  # first: the cache must still open the file after it
    sessions.put("k", "v")
    cache = SQLiteGenerationStore(path)
    cache.put_many({"g": Generation(request_id="r", model="m", text="stored")})
    assert sessions.get("k") == "v" and cache.get_many(["g"])["g"].text == "stored"
    cache.close()
    sessions.close()


def test_a_session_ttl_must_be_positive(tmp_path):
    with pytest.raises(ConfigError):
        open_session_store(tmp_path / "s.sqlite", ttl_s=0)
