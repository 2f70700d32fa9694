"""Routing on the real MMLU-Pro replay recordings (reads ../shared/data)."""

from __future__ import annotations

import random

import pytest

from eval.benchmarks import get_benchmark
from router import ClassifierScorer, Router, train_classifier
from skills import HashingEmbedder, build_profile_from_replay

MODELS = ["Meta-Llama-3_1-8B-Instruct", "mathstral-7B", "Phi-3-mini-4k-instruct", "Mistral-7B-Instruct-v0.2"]

pytestmark = pytest.mark.data


def test_profile_and_router_pick_better_than_chance(data_dir, replay_file):
    questions = get_benchmark("mmlu_pro").questions(data_dir)
    random.Random(0).shuffle(questions)
    train, test = questions[:3000], questions[3000:4500]
    emb = HashingEmbedder(1024)
    profile = build_profile_from_replay(replay_file, train, MODELS)
    clf = train_classifier([q.text for q in train], [q.category for q in train], emb, calibrate=False)
    scorer = ClassifierScorer(clf, emb)
    weights = scorer.skill_weights([q.text for q in test])
    truth = [q.category.replace("math", "mathematics") for q in test]
    accuracy = sum(max(w, key=w.get) == t for w, t in zip(weights, truth)) / len(test)
    assert accuracy > 0.5  # 14 categories: chance is about 0.11

    from common.recordings import iter_records

    wanted = {q.id for q in test}
    right = {
        (r.model, r.question_id): bool(r.correct) for r in iter_records(replay_file, MODELS) if r.question_id in wanted
    }

    def single_expert_accuracy(policy: str) -> float:
        decisions = Router(profile, scorer, policy, k=1, seed=0).route_weights(weights, [q.id for q in test])
        return sum(right[(d.experts[0].expert, d.question_id)] for d in decisions) / len(test)

    # the per-category best expert beats a random one by a clear margin
    assert single_expert_accuracy("category") > single_expert_accuracy("random") + 0.03
