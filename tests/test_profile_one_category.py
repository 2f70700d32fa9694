"""`coe profile` on a benchmark of one category (a user's own, e.g. GSM8K): a classifier that gives
every question that category, topics beside it when there are enough questions, and a profile
that tells the experts apart."""

from __future__ import annotations

import json

import pytest

from common.errors import BadInput
from eval.answers import AnswerKind, AnswerRule
from eval.benchmarks import Question
from eval.record import Benchmark
from orchestrator import Orchestrator, load_settings
from orchestrator.profiling import profile_pool, topic_count

NAMES = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo"]
THINGS = ["apples", "marbles", "stamps", "coins", "books", "shells"]
RIGHT = {"Good": 0.9, "Poor": 0.3}  # how often each recorded model is right


def questions(n: int, category: str | None = "gsm8k") -> list[Question]:
    return [
        Question(
            id=f"g{i}",
            benchmark="gsm8k",
            text=f"{NAMES[i % 6]} has {i + 3} {THINGS[(i // 6) % 6]} and buys {i % 7 + 2} more. How many now?",
            answer=str(2 * i + 5 + i % 7),
            category=category,
        )
        for i in range(n)
    ]


GSM8K = Benchmark(
    name="gsm8k",
    version="1",
    splits=("test",),
    load=lambda data, split: questions(60),
    prompt=lambda q: q.text,
    answers=AnswerRule(AnswerKind.NUMBER),
)
"""The user's benchmark the items come from (what judges their answers)."""


def write_pool(folder, items: list[Question]):
    """Two replay experts (right 90% and 30% of the time) and an aggregator that is never called."""
    folder.mkdir()
    replay = folder / "answers.jsonl"
    with replay.open("w") as out:
        for model, share in RIGHT.items():
            for i, q in enumerate(items):
                right = (i % 10) < share * 10
                said = int(q.answer) + (0 if right else 1)
                text = f"{q.text} ... The answer is {said}."  # judged again by the question's judge
                out.write(json.dumps({"model": model, "question_id": q.id, "text": text, "correct": int(right)}) + "\n")
    models = "".join(
        f'[[models]]\nname = "{model.lower()}"\n[models.source]\nkind = "replay"\n'
        f'path = "{replay}"\nmodel = "{model}"\nbenchmark = "gsm8k"\n'
        for model in RIGHT
    )
    aggregator = '[[models]]\nname = "agg"\n[models.source]\nkind = "http"\nbase_url = "http://127.0.0.1:9/v1"\n'
    (folder / "pool.toml").write_text(
        f'[pool]\nname = "one"\naggregator = "agg"\nexperts = ["good", "poor"]\n{models}{aggregator}model = "agg"\n',
        encoding="utf-8",
    )
    return folder


def test_one_category_profiles_and_routes_with_topics(tmp_path):
    items = questions(60)
    pool = write_pool(tmp_path / "pool", items)
    settings = load_settings(pool=pool, cache_dir=tmp_path / "cache", policy="topk", k=2)
    report = profile_pool(Orchestrator(settings), items, embedder="hashing-64", benchmark=GSM8K)
    assert {p.name for p in report.router_paths} == {"classifier.v1.json", "topics.v1.json"}

    coe = Orchestrator(settings)
    profile = coe.router().profile
    assert profile.counts("good", "gsm8k").n == 60 and profile.counts("good", "gsm8k").correct == 54
    assert profile.counts("poor", "gsm8k").correct == 18
    assert topic_count(len(items)) == 12  # each question is counted under its topic too
    assert sum(profile.counts("good", f"topic:{i}").n for i in range(12)) == 60

    texts = [q.text for q in questions(80)[60:]] + ["A baker sells 12 loaves a day. How many in a week?"]
    decisions = coe.router().route(texts)
    for decision in decisions:
        assert decision.skills["gsm8k"] == pytest.approx(0.5)  # half categories, half topics
        assert any(skill.startswith("topic:") for skill in decision.skills)
        assert decision.expert_names == ["good", "poor"]
        good, poor = (choice.score for choice in decision.experts)
        assert good > 0 > poor
        assert decision.confidence == 1.0
    category = coe.router("category", 1).route(texts[:1])[0]
    assert category.expert_names == ["good"] and not category.fallback


def test_few_questions_of_one_category_make_no_topics(tmp_path):
    items = questions(8)
    pool = write_pool(tmp_path / "pool", items)
    settings = load_settings(pool=pool, cache_dir=tmp_path / "cache", policy="all")
    report = profile_pool(Orchestrator(settings), items, embedder="hashing-64", benchmark=GSM8K)
    assert [p.name for p in report.router_paths] == ["classifier.v1.json"]
    decision = Orchestrator(settings).route("Ann has 4 pens and loses one. How many are left?")
    assert decision.skills == {"gsm8k": 1.0}
    assert decision.expert_names == ["good", "poor"]
    assert decision.experts[0].score > decision.experts[1].score


def test_unlabelled_questions_still_need_no_classifier(tmp_path):
    items = questions(30, category=None)
    pool = write_pool(tmp_path / "pool", items)
    settings = load_settings(pool=pool, cache_dir=tmp_path / "cache")
    with pytest.raises(BadInput, match="--no-classifier") as err:
        profile_pool(Orchestrator(settings), items, embedder="hashing-64", benchmark=GSM8K)
    assert "\n" not in str(err.value)
    report = profile_pool(Orchestrator(settings), items, classifier=False, benchmark=GSM8K)
    assert report.router_paths == []
