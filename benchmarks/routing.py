"""Routing benchmark on recorded MMLU-Pro answers of the six small instruct models.

Question ids are split (seeded) into a train part, on which the profile and the skill
classifier are fitted and the adaptive policy's two knobs are tuned (by a second split
inside it), and a disjoint test part on which everything is reported. Each policy's
chosen experts answer with their recorded letters, combined by majority vote with ties
going to the expert of highest overall competence (from the train profile).

    python benchmarks/routing.py            # writes benchmarks/results/routing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.recordings import iter_records  # noqa: E402
from eval.benchmarks import Question, get_benchmark  # noqa: E402
from eval.data import data_dir as default_data_dir  # noqa: E402
from orchestrator.pool import small_replay_models  # noqa: E402
from router import RouteDecision, Router, Selection, expected_accuracy, train_router  # noqa: E402
from skills import SentenceEmbedder, build_profile_from_replay, cached_embed, question_skills  # noqa: E402
from skills.profile import Profile  # noqa: E402

log = logging.getLogger("benchmarks.routing")

MODELS = small_replay_models()  # the six small instruct models of pools/replay-small
# policy -> k used for it (None: the policy decides)
POLICY_K = {
    "symbolic": 3, "topk": 3, "category": 1, "single-best": 1, "random": 3, "all": None, "adaptive": None,
}
COSTS = (0.0, 0.005, 0.01, 0.015, 0.02)
N_TOPICS = 20
TOPIC_SHARE = 0.5  # adaptive's scorer: categories (classifier) and topics, half each
SPREADS = (2.0, 3.0, 4.0, 5.0, 6.0)


def wilson(right: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return [0.0, 0.0]
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def load(data: Path) -> tuple[list[Question], dict[str, dict[str, str | None]]]:
    """The MMLU-Pro questions every model of the pool answered, and their recorded letters."""
    questions = get_benchmark("mmlu_pro").questions(data)
    preds: dict[str, dict[str, str | None]] = {}
    for record in iter_records(data / "replay" / "mmlu_pro_replay.jsonl.gz", MODELS):
        preds.setdefault(record.question_id, {})[record.model] = record.pred
    kept = [q for q in questions if len(preds.get(q.id, {})) == len(MODELS)]
    return kept, preds


def vote(letters: dict[str, str | None], experts: list[str], competence: dict[str, float]) -> str | None:
    """Majority letter of ``experts``; a tie goes to the most competent expert among the tied."""
    counts = Counter(letters[e] for e in experts if letters[e] is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = {letter for letter, n in counts.items() if n == top}
    voters = [e for e in experts if letters[e] in tied]
    return letters[max(voters, key=lambda e: (competence[e], e))]


def score(decisions: list[RouteDecision], questions: list[Question], preds, profile: Profile) -> dict:
    """Vote accuracy of the decisions; ties go to the expert most competent on the question's skills."""
    right, per_cat = 0, {}
    routes = [d.expert_names for d in decisions]
    for decision, q in zip(decisions, questions):
        competence = expected_accuracy(profile, decision.skills)
        ok = vote(preds[q.id], decision.expert_names, competence) == q.answer
        right += ok
        cat = per_cat.setdefault(q.category or "none", [0, 0])
        cat[0] += ok
        cat[1] += 1
    n = len(questions)
    return {
        "accuracy": round(right / n, 4),
        "ci95": wilson(right, n),
        "experts_per_question": round(sum(map(len, routes)) / n, 3),
        "per_category": {c: round(r / t, 4) for c, (r, t) in sorted(per_cat.items())},
    }


def split(questions: list[Question], fraction: float, seed: int) -> tuple[list[Question], list[Question]]:
    order = sorted(questions, key=lambda q: int(q.id) if q.id.isdigit() else q.id)
    random.Random(seed).shuffle(order)
    cut = int(len(order) * fraction)
    return order[:cut], order[cut:]


def fit(train: list[Question], vectors, embedder, replay: Path, seed: int):
    """Profile (skills: category and topic), category scorer, and the category+topic mixture."""
    arts = train_router(train, embedder, vectors=vectors, n_topics=N_TOPICS, seed=seed)
    profile = build_profile_from_replay(replay, train, {m: m for m in MODELS}, skills_of=arts.skills_of)
    return profile, arts.scorer(topic_share=0.0), arts.scorer(topic_share=TOPIC_SHARE)


def tune_adaptive(train, vec_of, embedder, replay, preds, seed, max_experts: float) -> tuple[Selection, dict]:
    """Pick (cost, spread) on a split of the train part: best accuracy under ``max_experts``."""
    inner_fit, inner_eval = split(train, 0.6, seed + 1)
    profile, _, mixture = fit(inner_fit, vec_of(inner_fit), embedder, replay, seed)
    weights = mixture.weights_from_vectors(vec_of(inner_eval))
    grid = {}
    for cost in COSTS:
        for spread in SPREADS:
            selection = Selection(cost=cost, spread=spread, max_k=len(MODELS))
            decisions = Router(profile, mixture, "adaptive", selection=selection).route_weights(weights)
            grid[(cost, spread)] = score(decisions, inner_eval, preds, profile)
    allowed = {key: r for key, r in grid.items() if r["experts_per_question"] < max_experts} or grid
    best = max(allowed, key=lambda key: (allowed[key]["accuracy"], -allowed[key]["experts_per_question"]))
    chosen = Selection(cost=best[0], spread=best[1], max_k=len(MODELS))
    log.info("adaptive: tuned cost=%s spread=%s (inner accuracy %.4f, %.2f experts)", best[0], best[1],
             grid[best]["accuracy"], grid[best]["experts_per_question"])
    return chosen, {"cost": best[0], "spread": best[1], "inner_accuracy": grid[best]["accuracy"],
                    "inner_experts_per_question": grid[best]["experts_per_question"]}


def category_ceilings(train, test, preds, profile: Profile) -> dict:
    """How far choosing experts per (true) category can go: for each category the subset of
    experts whose vote was best, picked on the train part, and picked on the test part itself
    (in-sample: an optimistic bound, not a result)."""
    from itertools import combinations

    subsets = [list(c) for k in range(1, len(MODELS) + 1) for c in combinations(MODELS, k)]
    competence = {m: profile.competence(m) for m in MODELS}

    def rights(questions):
        out: dict[str, list[list[bool]]] = {}
        for q in questions:
            row = [vote(preds[q.id], s, competence) == q.answer for s in subsets]
            out.setdefault(q.category or "none", []).append(row)
        return out

    on_train, on_test = rights(train), rights(test)
    fitted = in_sample = experts_fitted = 0.0
    for cat, rows in on_test.items():
        test_totals = [sum(col) for col in zip(*rows)]
        train_totals = [sum(col) for col in zip(*on_train.get(cat, rows))]
        pick = max(range(len(subsets)), key=lambda i: (train_totals[i], -len(subsets[i])))
        fitted += test_totals[pick]
        experts_fitted += len(subsets[pick]) * len(rows)
        in_sample += max(test_totals)
    return {
        "best_subset_per_true_category_fit_on_train": round(fitted / len(test), 4),
        "its_experts_per_question": round(experts_fitted / len(test), 3),
        "best_subset_per_true_category_in_sample_on_test": round(in_sample / len(test), 4),
    }


def throughput(router: Router, texts: list[str]) -> tuple[float, float, float]:
    """Questions/s routing a batch (embedding included; best of 2 runs), and the median and
    fastest ms for one question (of 30). The machine is shared: the best runs show the cost."""
    router.route(texts[:8])  # warm up: model load, first call
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        router.route(texts)
        runs.append(time.perf_counter() - started)
    qps = len(texts) / min(runs)
    singles = []
    for text in texts[:30]:
        started = time.perf_counter()
        router.route([text])
        singles.append((time.perf_counter() - started) * 1000)
    singles.sort()
    return qps, singles[len(singles) // 2], singles[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-fraction", type=float, default=0.5)
    parser.add_argument(
        "--max-experts", type=float, default=4.0, help="adaptive must stay below this on average"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "routing.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = args.data_dir or default_data_dir()
    replay = data / "replay" / "mmlu_pro_replay.jsonl.gz"

    questions, preds = load(data)
    embedder = SentenceEmbedder()
    started = time.perf_counter()
    all_vectors = cached_embed(embedder, [q.text for q in questions])
    row = {q.id: i for i, q in enumerate(questions)}
    log.info("embeddings for %d questions ready in %.1f s", len(questions), time.perf_counter() - started)

    def vec_of(subset):
        return all_vectors[[row[q.id] for q in subset]]

    train, test = split(questions, args.train_fraction, args.seed)
    profile, scorer, mixture = fit(train, vec_of(train), embedder, replay, args.seed)
    weights = scorer.weights_from_vectors(vec_of(test))
    mixed_weights = mixture.weights_from_vectors(vec_of(test))
    predicted = [max(w, key=w.get) for w in weights]
    truth = [question_skills(q)[0] for q in test]
    classifier_accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(test)

    adaptive, tuned = tune_adaptive(train, vec_of, embedder, replay, preds, args.seed, args.max_experts)
    policies, ids = {}, [q.id for q in test]
    for name, k in POLICY_K.items():
        selection = adaptive if name == "adaptive" else Selection(k=k or 3)
        scorer_ = mixture if name == "adaptive" else scorer
        router = Router(profile, scorer_, name, seed=args.seed, selection=selection)
        decisions = router.route_weights(mixed_weights if name == "adaptive" else weights, ids)
        policies[name] = {"scorer": router.scorer.name, **score(decisions, test, preds, profile)}
        log.info("%-11s accuracy %.4f %s, %.2f experts/question", name, policies[name]["accuracy"],
                 policies[name]["ci95"], policies[name]["experts_per_question"])

    best_single = max(MODELS, key=lambda m: sum(preds[q.id][m] == q.answer for q in train))
    reference = {
        "best_single_on_test": round(sum(preds[q.id][best_single] == q.answer for q in test) / len(test), 4),
        "majority_all_on_test": policies["all"]["accuracy"],
        "oracle_on_test": round(
            sum(any(preds[q.id][m] == q.answer for m in MODELS) for q in test) / len(test), 4
        ),
        "published_on_all_questions": {"best_single": 0.442, "majority_all": 0.469, "oracle": 0.726},
    }
    ceilings = category_ceilings(train, test, preds, profile)
    log.info("ceilings of per-category selection: %s", ceilings)
    ablations = {}
    variants = (("adaptive_categories_only", scorer, weights), ("topk_mixture", mixture, mixed_weights))
    for label, scorer_, rows in variants:
        policy = label.split("_")[0]
        selection = adaptive if policy == "adaptive" else Selection(k=3)
        router = Router(profile, scorer_, policy, seed=args.seed, selection=selection)
        ablations[label] = score(router.route_weights(rows, ids), test, preds, profile)
        log.info("%s: accuracy %.4f, %.2f experts/question", label, ablations[label]["accuracy"],
                 ablations[label]["experts_per_question"])
    qps, ms_single, ms_fastest = throughput(Router(profile, mixture, "adaptive", selection=adaptive),
                                [q.text for q in test[:512]])
    result = {
        "benchmark": "mmlu_pro replay",
        "models": MODELS,
        "seed": args.seed,
        "n_train": len(train),
        "n_test": len(test),
        "embedder": embedder.name,
        "policy_k": POLICY_K,
        "adaptive_tuning": tuned,
        "n_topics": N_TOPICS,
        "topic_share": TOPIC_SHARE,
        "classifier_accuracy": round(classifier_accuracy, 4),
        "policies": policies,
        "ablations": ablations,
        "category_selection_ceilings": ceilings,
        "reference": reference,
        "route_qps_batched": round(qps, 1),
        "route_ms_single": round(ms_single, 1),
        "route_ms_single_fastest": round(ms_fastest, 1),
        "route_batch_size": min(512, len(test)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"classifier accuracy (held out): {classifier_accuracy:.4f}")
    print(f"{'policy':<12} {'accuracy':>8}  {'95% interval':<18} experts/q")
    for name, r in policies.items():
        print(f"{name:<12} {r['accuracy']:>8.4f}  {str(r['ci95']):<18} {r['experts_per_question']:.2f}")
    print(f"reference on test: {reference}")
    print(f"per-category selection ceilings: {ceilings}")
    print(f"routing: {qps:.1f} questions/s batched, {ms_single:.1f} ms for one question "
          f"(median; fastest {ms_fastest:.1f}; embedding included)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
