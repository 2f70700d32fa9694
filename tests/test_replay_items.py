"""Replay experts answer the benchmark item a question is, and nothing else.

A small world made up here (no shared data): an MMLU-Pro-shaped file of five invented items in a
data folder of the test's own, recordings of four models on them, and a pool of replay experts
whose aggregator answers from recordings too (so nothing here loads a model). A question's text
finds its item; a question of another benchmark whose id collides is a replay miss, in the SDK
(``ReplayMiss``) and in the service (404 ``replay_miss``); eval and profile refuse up front.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from aggregators import ExpertAnswer
from batching import FakeEngine, make_engine
from common.errors import BadInput, ConfigError, GenerationFailed, ReplayMiss
from common.query import Query
from eval.benchmarks import Question, with_options
from orchestrator import Orchestrator, load_settings
from orchestrator.items import ItemIndex, ItemRef, check_recordings, item_of
from orchestrator.pool import load_pool
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from orchestrator.trace import Answer, Trace
from router import ExpertChoice, RouteDecision
from tests.live_server import serving

ITEMS = [  # id, question, options, answer
    ("1", "Which gas do plants take in to make sugar?", ["Oxygen", "Carbon dioxide", "Neon", "Helium"], "B"),
    ("2", "How many legs does a spider have?", ["6", "8", "10"], "B"),
    ("3", "Which of these numbers is the largest?", ["1", "2", "3"], "C"),
    ("4", "Which of these numbers is the largest?", ["7", "5", "9"], "C"),
    ("5", "How many legs does a spider have?", ["6", "8", "10"], "B"),  # the same item again
]
PREDS = {  # model -> (id -> its recorded letter); the aggregator's records too
    "A": {"1": "B", "2": "B", "3": "C", "4": "A", "5": "A"},
    "B": {"1": "B", "2": "A", "3": "C", "4": "C", "5": "A"},
    "C": {"1": "A", "2": "B", "3": "A", "4": "C", "5": "A"},
    "Agg": {"1": "B", "2": "B", "3": "C", "4": "C", "5": "A"},
}
MAJORITY = {"1": "B", "2": "B", "3": "C", "4": "C"}


def recorded_text(model: str, qid: str) -> str:
    return f"{model} thought about question {qid}. The answer is ({PREDS[model][qid]})."


@pytest.fixture
def world(tmp_path) -> tuple[Path, Path]:
    """(pool folder, data folder) of the made-up world."""
    data = tmp_path / "data"
    (data / "benchmarks" / "mmlu_pro").mkdir(parents=True)
    rows = [
        {"question_id": int(i), "question": q, "options": o, "answer": a, "category": "biology"} for i, q, o, a in ITEMS
    ]
    with gzip.open(data / "benchmarks" / "mmlu_pro" / "test.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows)
    (data / "replay").mkdir()
    with (data / "replay" / "rec.jsonl").open("w", encoding="utf-8") as out:
        for model, preds in PREDS.items():
            for qid, pred in preds.items():
                record = {"model": model, "question_id": int(qid), "pred": pred, "text": recorded_text(model, qid)}
                out.write(json.dumps(record) + "\n")
    pool = tmp_path / "pool"
    pool.mkdir()
    models = "".join(
        f'\n[[models]]\nname = "{m.lower()}"\n[models.source]\nkind = "replay"\n'
        f'path = "{{data_dir}}/replay/rec.jsonl"\nmodel = "{m}"\nbenchmark = "mmlu_pro"\n'
        for m in PREDS
        if m != "Agg"
    )
    writer = '\n[[models]]\nname = "agg"\nmemory_mb = 100\n[models.source]\nkind = "vllm"\nmodel = "packaged:x"\n'
    (pool / "pool.toml").write_text(
        '[pool]\nname = "made-up"\naggregator = "agg"\nexperts = ["a", "b", "c"]\n' + models + writer,
        encoding="utf-8",
    )
    return pool, data


@pytest.fixture
def coe(world, tmp_path) -> Orchestrator:
    pool, data = world
    return Orchestrator(load_settings(pool=pool, data_dir=data, runs_dir=tmp_path / "runs", policy="all"))


ASK = {"aggregation": "majority"}


def test_a_question_text_is_answered_from_the_recordings_of_its_item(coe):
    answer = coe.answer("  Which gas do plants\n take in to   make sugar? ", **ASK)
    assert answer.choice == MAJORITY["1"]
    assert {e.expert: e.text for e in answer.trace.experts} == {m.lower(): recorded_text(m, "1") for m in "ABC"}
    assert answer.question_id.startswith("q-")  # the answer keeps the question's own id


def test_options_tell_items_of_one_text_apart(coe):
    assert coe.answer("Which of these numbers is the largest?", options=["7", "5", "9"], **ASK).choice == "C"
    assert coe.answer("Which of these numbers is the largest?", options=["1", "2", "3"], **ASK).choice == "C"
    chosen = coe.answer("Which of these numbers is the largest?", options=["7", "5", "9"], **ASK)
    assert {e.text for e in chosen.trace.experts} == {recorded_text(m, "4") for m in "ABC"}
    with pytest.raises(ReplayMiss):  # without options it could be either: it is neither
        coe.answer("Which of these numbers is the largest?", **ASK)
    with pytest.raises(ReplayMiss):  # options no item has
        coe.answer("Which of these numbers is the largest?", options=["7", "9", "5"], **ASK)


def test_the_text_with_its_options_written_in_finds_the_item(coe):
    number, text, options, _ = ITEMS[0]
    written = with_options(Query(text=text, options=tuple(options)))
    answer = coe.answer(written, **ASK)
    assert {e.text for e in answer.trace.experts} == {recorded_text(m, number) for m in "ABC"}


def test_an_unknown_text_is_a_replay_miss(coe):
    with pytest.raises(ReplayMiss, match="no recorded answer"):
        coe.answer("What is the airspeed velocity of an unladen swallow?", **ASK)


def test_the_index_finds_the_first_of_identical_items(world):
    _, data = world
    index = ItemIndex(["mmlu_pro"], data)
    assert index.find(Query(text="How many legs does a spider have?")) == ItemRef("2", "mmlu_pro")
    assert index.find(Query(text="How many legs?")) is None
    assert ItemIndex(["gsm8k"], data).find(Query(text=ITEMS[0][1])) is None  # not built in: no texts


def test_benchmark_items_are_themselves_and_free_text_without_an_index_keeps_its_id():
    item = Question(id="7", benchmark="mmlu_pro_5shot", text="t", answer="A", options=("x", "y"))
    assert item_of(item, None) == ItemRef("7", "mmlu_pro")  # the 5-shot variant asks MMLU-Pro's items
    assert item_of(Query(id="q-1", text="t"), None) == ItemRef("q-1")


def test_requests_name_the_item_they_ask(coe):
    tasks, jobs = coe.tasks([ITEMS[1][1], Query(id="mine", text="Something else entirely?")])
    asked = {(t.request.question_id, t.request.benchmark) for t in tasks if t.request is not None}
    assert asked == {("2", "mmlu_pro"), ("mine", None)}
    assert {(j.question_id, j.benchmark) for j in jobs.values()} == asked  # a recorded aggregator too


def test_a_recording_of_another_benchmark_never_answers(coe):
    colliding = Question(id="1", benchmark="aime", text="Find the remainder of 2^10 by 7.", answer="2")
    (answer,) = coe.answer_batch([colliding], **ASK)
    assert answer.error and answer.choice is None
    assert all("its recordings are of mmlu_pro" in (e.error or "") for e in answer.trace.experts)
    assert isinstance(answer.failure(), ReplayMiss)
    same = Question(id="1", benchmark="mmlu_pro_5shot", text=ITEMS[0][1], answer="B", options=tuple(ITEMS[0][2]))
    assert coe.answer_batch([same], **ASK)[0].choice == MAJORITY["1"]


def test_only_misses_make_a_replay_miss():
    def failed(*kinds: str | None) -> Answer:
        experts = tuple(ExpertAnswer(expert=f"e{i}", error="x", error_type=k) for i, k in enumerate(kinds))
        chosen = tuple(ExpertChoice(expert=e.expert, score=1.0) for e in experts)
        route = RouteDecision(question_id="q", policy="all", skills={}, experts=chosen, confidence=1.0)
        trace = Trace(question_id="q", pool="p", route=route, experts=experts, aggregator="a")
        return Answer(question_id="q", text="", error="none arrived", trace=trace)

    assert isinstance(failed("ReplayMiss", "ReplayMiss").failure(), ReplayMiss)
    assert type(failed("ReplayMiss", "EngineTimeout").failure()) is GenerationFailed
    assert type(failed(None).failure()) is GenerationFailed


def test_the_service_answers_a_question_text_and_404s_an_unknown_one(world, tmp_path):
    pool, data = world
    core = load_settings(pool=pool, data_dir=data, runs_dir=tmp_path / "runs")
    prompts: list[str] = []

    def aggregate(spec, request) -> str:  # the aggregator, a live model, stood in for by a fake
        prompts.append(request.text)
        return "The answers agree. The answer is (B)."

    def engines(spec, cpus=None):
        return make_engine(spec, cache_dir=tmp_path) if spec.source.kind == "replay" else FakeEngine(spec, aggregate)

    service = Service(ServiceSettings(core=core), Orchestrator(core, engine_factory=engines))
    with serving(create_app(service=service)) as url, httpx.Client(base_url=url, timeout=60) as http:
        asked = {"model": "made-up/all", "messages": [{"role": "user", "content": ITEMS[0][1]}]}
        reply = http.post("/v1/chat/completions", json=asked)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "The answers agree. The answer is (B)."
        assert all(recorded_text(m, "1").split(". ")[0] in prompts[0] for m in "ABC")  # the item's recordings
        unknown = {**asked, "messages": [{"role": "user", "content": "Is this in the recordings?"}]}
        missed = http.post("/v1/chat/completions", json=unknown)
        assert missed.status_code == 404 and missed.json()["error"]["type"] == "replay_miss", missed.text
        one = http.post("/v1/answer", json={"question": "Is this in the recordings?", "aggregation": "majority"})
        assert one.status_code == 404 and one.json()["error"]["type"] == "replay_miss", one.text
        streamed = http.post("/v1/chat/completions", json={**unknown, "stream": True})
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: {")]
        assert json.loads(events[-1])["error"]["type"] == "replay_miss"


def test_a_replay_source_names_its_benchmark(world):
    pool, data = world
    text = (pool / "pool.toml").read_text(encoding="utf-8")
    (pool / "pool.toml").write_text(text.replace('benchmark = "mmlu_pro"\n', "", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pool.toml: models\[0\].source.benchmark: missing; name the benchmark"):
        load_pool(pool, data)
    (pool / "pool.toml").write_text(text.replace('"mmlu_pro"', '"mmlu_pro_5shot"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="mmlu_pro_5shot asks the items of mmlu_pro; name mmlu_pro"):
        load_pool(pool, data)


def test_putting_another_benchmark_to_recordings_is_refused(world):
    pool = load_pool(world[0], world[1])
    check_recordings(pool, "mmlu_pro")
    with pytest.raises(BadInput, match=r"'made-up' answers from recordings of mmlu_pro \(a, b, c\)"):
        check_recordings(pool, "aime")
