"""Conversations through ``coe serve``: a real uvicorn server, the real ``openai`` client (and the
SDK's ``Client``), engines that record what each model was sent in its own chat template (the
form a real engine renders: ``chat_messages`` for chat models, ``completion_prompt`` for base
models), session affinity in SQLite and in one Redis shared by two replicas, and refused
conversations that change nothing stored."""

from __future__ import annotations

import sqlite3
import threading

import httpx
import openai
import pytest

from batching import FakeEngine
from batching.engines.base import chat_messages, completion_prompt
from common.conversation import estimate_tokens
from orchestrator import Client, Orchestrator, load_pool, load_settings
from orchestrator.pools.settings import SemanticCacheSettings, shipped_pool
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from tests.live_server import serving
from tests.redis_server import redis_server  # noqa: F401 - a fixture

KEY = "chat-key-for-tests"
OWN = "You are a careful expert."
SYSTEM = "Answer like a ship's captain."
FIRST = "My cat is called Turnip and she is seven years old."
THIRD = "How old is the animal I named first, and what is its name?"


class Recorder:
    """Fake engines that keep, per model, every request as the model would read it: the chat
    messages of a chat model, the plain prompt of a base model. Each expert answers differently
    (no consensus), so the aggregator always writes the answer."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object]] = []  # (model, request id, rendered)
        self.lock = threading.Lock()

    def __call__(self, spec, cpus=None):
        recorder = self

        class Recording(FakeEngine):
            def generate(self, requests, on_result=None, on_delta=None):
                with recorder.lock:
                    for r in requests:
                        if spec.prompt_mode == "chat":
                            rendered: object = chat_messages(r, spec.system_prompt)
                        else:
                            rendered = completion_prompt(r, spec.system_prompt)
                        recorder.sent.append((spec.name, r.id, rendered))
                return super().generate(requests, on_result, on_delta)

        return Recording(spec, answer=lambda s, r: f"{s.name} reasons. Final answer: {s.name}-{len(r.messages)}")

    def of(self, model: str, aggregate: bool = False) -> list[object]:
        return [what for name, rid, what in self.sent if name == model and rid.endswith("/aggregate") == aggregate]


def default_pool(data_dir, **changes):
    """The default pool, SmolLM2 with instructions of its own, each model's spec changed by ``changes``."""
    pool = load_pool(shipped_pool("default"), data_dir)
    models = []
    for spec in pool.models:
        update = dict(changes)
        if spec.name == "smollm2":
            update["system_prompt"] = OWN
        models.append(spec.model_copy(update=update))
    return pool.model_copy(update={"models": tuple(models)})


def app_of(tmp_path, engines, pool="default", *, keys=True, service=None, **core):
    """The service on ``pool`` (a shipped pool's name, or a ``Pool``) with ``engines``; ``core``
    overrides settings (policy ``all`` unless given)."""
    name = pool if isinstance(pool, str) else "default"
    core.setdefault("policy", "all")
    settings = load_settings(pool=shipped_pool(name), runs_dir=tmp_path / "runs", memory_budget_mb=40_000, **core)
    keys_file = None
    if keys:
        keys_file = tmp_path / "keys.txt"
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        keys_file.write_text(KEY + "\n")
    service_settings = ServiceSettings(core=settings, api_keys_file=keys_file, **(service or {}))
    coe = Orchestrator(settings, pool=None if isinstance(pool, str) else pool, engine_factory=engines)
    return create_app(service_settings, service=Service(service_settings, coe))


def three_turns() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": "Noted: Turnip, seven."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": THIRD},
    ]


def test_a_three_turn_conversation_reaches_every_expert_and_the_aggregator_whole(tmp_path, data_dir):
    engines = Recorder()
    with serving(app_of(tmp_path, engines, default_pool(data_dir))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
        reply = client.chat.completions.create(model="default", messages=three_turns())
    trace = reply.model_extra["trace"]
    assert reply.choices[0].message.content.startswith("smollm2 reasons")  # the aggregator's words
    assert trace["conversation"]["messages"] == 6 and trace["conversation"]["cut"] == {}
    assert trace["conversation"]["aggregator_cut"] == 0

    (chat,) = engines.of("smollm2")  # a chat model: its template's messages, our instructions and the user's
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[0]["content"] == f"{OWN}\n\n{SYSTEM}"
    assert chat[1]["content"] == FIRST and chat[-1]["content"].startswith(THIRD)
    (prompt,) = engines.of("gemma3")  # a base model: the whole conversation in its plain prompt
    assert prompt.startswith(SYSTEM) and f"Question: {FIRST}" in prompt and "Answer: Paris." in prompt
    assert prompt.index(FIRST) < prompt.index(THIRD) and prompt.endswith("Answer:")
    (aggregator,) = engines.of("smollm2", aggregate=True)
    assert [m["role"] for m in aggregator] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert aggregator[0]["content"] == f"{OWN}\n\n{SYSTEM}" and aggregator[1]["content"] == FIRST
    synthesis = aggregator[-1]["content"]
    assert "last message of the conversation above" in synthesis and f"Question:\n{THIRD}" in synthesis
    assert "gemma3 reasons" in synthesis  # the experts' answers


def test_the_sdk_client_and_the_sdk_send_the_same_conversation(tmp_path, data_dir):
    engines = Recorder()
    pool = default_pool(data_dir)
    with serving(app_of(tmp_path / "served", engines, pool)) as url, Client(url, api_key=KEY) as client:
        served = client.chat(three_turns(), session="trip")
    local_engines = Recorder()
    settings = load_settings(pool=shipped_pool("default"), runs_dir=tmp_path / "local", policy="all")
    local = Orchestrator(settings, pool=pool, engine_factory=local_engines).chat(three_turns(), session="trip")
    assert served.text == local.text and served.question_id == local.question_id
    assert sorted(map(str, engines.sent)) == sorted(map(str, local_engines.sent))
    assert served.trace.conversation is not None and served.trace.conversation.affinity.named_by == "session"


def test_the_oldest_turns_are_cut_to_fit_a_small_context(tmp_path, data_dir):
    engines = Recorder()
    turns = [{"role": "system", "content": SYSTEM}]
    for i in range(8):
        turns.append({"role": "user", "content": f"Fact {i}: " + "the ship carries barrels of salted fish " * 4})
        turns[-1]["content"] = turns[-1]["content"].strip()
        turns.append({"role": "assistant", "content": f"Noted fact {i}."})
    turns.append({"role": "user", "content": "What was the last fact?"})
    pool = default_pool(data_dir, context_tokens=700)
    with serving(app_of(tmp_path, engines, pool)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
        reply = client.chat.completions.create(model="default", messages=turns)
    record = reply.model_extra["trace"]["conversation"]
    assert record["messages"] == 18
    assert set(record["cut"]) == {"smollm2", "gemma3"} and all(0 < n < 16 for n in record["cut"].values())
    assert 0 < record["aggregator_cut"] <= 16

    earlier = turns[1:-1]
    (chat,) = engines.of("smollm2")
    shown = chat[1:-1]
    assert chat[0]["content"] == f"{OWN}\n\n{SYSTEM}"  # the system message stays
    assert shown == earlier[record["cut"]["smollm2"] :] and shown[0]["role"] == "user"  # the newest, whole exchanges
    assert chat[-1]["content"].startswith("What was the last fact?")  # the question is never cut
    sent = sum(estimate_tokens(m["content"]) + 8 for m in chat) + 160  # and what smollm2 may write
    assert sent <= 700
    (prompt,) = engines.of("gemma3")
    kept = earlier[record["cut"]["gemma3"] :]
    assert kept[0]["content"] in prompt and earlier[record["cut"]["gemma3"] - 2]["content"] not in prompt
    (aggregator,) = engines.of("smollm2", aggregate=True)
    assert len(aggregator) - 2 == 16 - record["aggregator_cut"]  # system + shown + the synthesis prompt


@pytest.mark.data
def test_a_conversation_keeps_its_experts_over_follow_ups_and_moves_on_a_new_topic(tmp_path, data_dir):
    engines = Recorder()
    app = app_of(tmp_path, engines, "replay-small", policy="topk", k=2)
    turns = [
        "What is the pH of a 0.01 M solution of hydrochloric acid?",
        "And how does that change if the solution is diluted tenfold?",
        "What about acetic acid at the same concentration?",
        "Something else: under contract law, is a verbal agreement to sell land enforceable?",
    ]
    with serving(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
        for how in ("user", "turns"):  # named by the user field, then recognised by its earlier turns
            messages: list[dict[str, str]] = []
            seen = []
            for turn in turns:
                messages.append({"role": "user", "content": turn})
                named = {"user": "alice"} if how == "user" else {}
                reply = client.chat.completions.create(model="replay-small/topk", messages=messages, **named)
                trace = reply.model_extra["trace"]
                seen.append(([e["expert"] for e in trace["experts"]], trace["conversation"]["affinity"]))
                messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            outcomes = [affinity["outcome"] for _, affinity in seen]
            assert outcomes == ["new", "kept", "kept", "moved"], seen
            assert seen[1][0] == seen[2][0] == seen[0][0]  # the follow-ups kept the first turn's experts
            assert seen[3][1]["why"].startswith("moved, because the skills moved by") and "law" in seen[3][1]["why"]
            assert seen[3][1]["shift"] > seen[3][1]["threshold"] >= seen[2][1]["shift"]
            assert {a["named_by"] for _, a in seen[1:]} == {"session" if how == "user" else "turns"}


def test_two_replicas_sharing_redis_agree_on_a_sessions_experts(tmp_path, redis_server):  # noqa: F811
    """Replica A answers a conversation's first turn; replica B, with its own engines and state but
    the same Redis, keeps A's experts for the next turn, named or recognised by its turns."""
    first, second = Recorder(), Recorder()
    shared = {"store": redis_server.url, "policy": "random"}  # random: B alone would draw other experts
    a = app_of(tmp_path / "a", first, k=1, **shared)
    b = app_of(tmp_path / "b", second, k=1, **shared)
    with serving(a) as url_a, serving(b) as url_b:
        via_a = openai.OpenAI(base_url=f"{url_a}/v1", api_key=KEY)
        via_b = openai.OpenAI(base_url=f"{url_b}/v1", api_key=KEY)
        for named in (True, False):
            chosen = set()
            for n in range(6):  # several conversations: random routing would split them between experts
                header = {"X-Session-Id": f"voyage-{n}"} if named else {}
                turn = [{"role": "user", "content": f"Conversation {n}: which knot holds best?"}]
                start = via_a.chat.completions.create(model="default", messages=turn, extra_headers=header or None)
                expert = start.model_extra["trace"]["experts"][0]["expert"]
                chosen.add(expert)
                turn += [
                    {"role": "assistant", "content": start.choices[0].message.content},
                    {"role": "user", "content": "And which one for a mooring line?"},
                ]
                more = via_b.chat.completions.create(model="default", messages=turn, extra_headers=header or None)
                trace = more.model_extra["trace"]
                assert trace["experts"][0]["expert"] == expert
                assert trace["conversation"]["affinity"]["outcome"] == "kept"
                assert trace["conversation"]["affinity"]["named_by"] == ("session" if named else "turns")
            assert len(chosen) == 2  # both experts were drawn, and each stayed put across replicas


BAD = [
    ("roles out of order", {"messages": [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hi?"}]},
     400, "bad_input", "messages[0].role"),
    ("two user messages in a row", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     400, "bad_input", "messages[1].role"),
    ("an empty message", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "},
                                       {"role": "user", "content": "b"}]}, 400, "bad_input", "messages[1].content"),
    ("an image", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]},
     400, "unsupported", "messages[0].content[1].type"),
    ("a tool message", {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "42"}]},
     400, "unsupported", "messages[1].role"),
    ("tools", {"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]},
     400, "unsupported", "tools"),
    ("a tool choice", {"messages": [{"role": "user", "content": "a"}], "tool_choice": "auto"},
     400, "unsupported", "tool_choice"),
    ("a JSON response format",
     {"messages": [{"role": "user", "content": "a"}], "response_format": {"type": "json_object"}},
     400, "unsupported", "response_format"),
    ("an oversized conversation", {"messages": [{"role": "user", "content": "a" * 900},
                                                {"role": "assistant", "content": "b" * 900},
                                                {"role": "user", "content": "c"}]},
     400, "too_large", "messages"),
]  # fmt: skip


def table_rows(path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608


def test_bad_conversations_are_one_json_error_naming_the_field_and_change_nothing_stored(tmp_path):
    engines = Recorder()
    with serving(app_of(tmp_path, engines, max_conversation_chars=1_500)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
        good = [{"role": "user", "content": "Is the sea salty?"}]
        reply = client.chat.completions.create(model="default", messages=good, user="bob")
        good += [{"role": "assistant", "content": reply.choices[0].message.content}]
        store = tmp_path / "runs" / "store.sqlite"
        before, asked = table_rows(store), len(engines.sent)
        assert before["sessions"] == 1 and before["entries"] > 0
        for name, body, status, kind, param in BAD:
            sent = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "default", "user": "bob", **body},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            )
            assert sent.status_code == status, (name, sent.text)
            error = sent.json()["error"]
            assert (error["type"], error["param"]) == (kind, param), name
            assert error["message"].startswith(param) and "\n" not in error["message"], name
        with pytest.raises(openai.BadRequestError):  # the openai client reads the 400 as its own error
            client.chat.completions.create(model="default", messages=good + BAD[3][1]["messages"])
        assert table_rows(store) == before and len(engines.sent) == asked  # nothing ran, nothing was written
        with Client(url, api_key=KEY) as sdk:
            with pytest.raises(Exception, match=r"messages\[0\]\.role"):
                sdk.chat([{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hi?"}])


def test_the_semantic_cache_answers_a_follow_up_only_within_its_own_conversation(tmp_path):
    """The same last message in another conversation is another question: a miss; the same
    conversation again is a hit."""
    engines = Recorder()
    on = {"semantic_cache": SemanticCacheSettings(enabled=True)}
    with serving(app_of(tmp_path, engines, cache="off", service=on)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)

        def ask(pet: str) -> dict:
            messages = [
                {"role": "user", "content": f"My pet is called {pet}."},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "What is my pet called?"},
            ]
            return client.chat.completions.create(model="default", messages=messages).model_extra["trace"]

        assert ask("Turnip")["semantic_cache"]["outcome"] == "miss"
        assert ask("Biscuit")["semantic_cache"]["outcome"] == "miss"
        assert ask("Turnip")["semantic_cache"]["outcome"] == "hit"
