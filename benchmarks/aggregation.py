"""Vote aggregators on the replay small pool: majority vs competence-weighted, all vs routed.

Six recorded 6B-8B instruct models answer the MMLU-Pro test questions (../shared/data/replay).
Question ids are split with a seed into a train part (competence: per-category smoothed
accuracy of each expert) and a disjoint test part (reported). On the test part:

    single_best            the expert with the best train accuracy, alone
    majority_all           one vote per expert, all six
    weighted_all           log-odds weights log(p/(1-p)), p = per-category train accuracy
    weighted_all_kclass    log((K-1) p/(1-p)), K = number of options (multi-class form)
    majority_routed        majority over the k experts routed to the question
    weighted_routed        weighted over the routed experts (and _kclass)
    oracle                 some expert was right (upper bound of any aggregator)

Routing: the k experts with the best smoothed accuracy on the question's category.

    .venv/bin/python benchmarks/aggregation.py [--k 3] [--seed 0] [--train-fraction 0.5]

Prints the figures and writes benchmarks/results/aggregation.json (keeping any
``live_default_pool`` section written by benchmarks/aggregator_live.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from aggregators import AggregationResult, ExpertAnswer, majority, weighted, wilson_interval  # noqa: E402
from batching.engines import iter_records  # noqa: E402
from eval.benchmarks import Question, load_mmlu_pro  # noqa: E402
from eval.data import data_dir, replay_path  # noqa: E402

log = logging.getLogger("benchmarks.aggregation")

RESULTS = ROOT / "benchmarks" / "results" / "aggregation.json"
SMALL_POOL = (
    "Meta-Llama-3_1-8B-Instruct",
    "mathstral-7B",
    "Phi-3-mini-4k-instruct",
    "Mistral-7B-Instruct-v0.2",
    "Qwen1.5-7B-Chat",
    "Yi-6b-Chat",
)
PRIOR_STRENGTH = 4.0

Preds = dict[str, dict[str, str | None]]  # expert -> question id -> recorded choice


def split_ids(ids: Sequence[str], *, seed: int, train_fraction: float) -> tuple[set[str], set[str]]:
    """Seeded split of question ids into disjoint train and test sets."""
    ordered = sorted(ids, key=lambda i: (len(i), i))
    random.Random(seed).shuffle(ordered)
    cut = round(len(ordered) * train_fraction)
    return set(ordered[:cut]), set(ordered[cut:])


def load_preds(path: Path, experts: Sequence[str]) -> Preds:
    preds: Preds = {e: {} for e in experts}
    for record in iter_records(path, experts):
        preds[record.model][record.question_id] = record.pred
    return preds


class CategoryCompetence:
    """Per-category smoothed accuracy from train answers (Beta prior on overall accuracy)."""

    def __init__(self, questions: Sequence[Question], preds: Preds, prior_strength: float = PRIOR_STRENGTH):
        self.overall: dict[str, float] = {}
        self.table: dict[tuple[str, str], float] = {}
        for expert, answers in preds.items():
            n = right = 0
            per: dict[str, list[int]] = {}
            for q in questions:
                hit = int(answers.get(q.id) == q.answer)
                n, right = n + 1, right + hit
                tally = per.setdefault(q.category or "", [0, 0])
                tally[0] += 1
                tally[1] += hit
            prior = (right + 1) / (n + 2)
            self.overall[expert] = prior
            for category, (cn, cr) in per.items():
                self.table[(expert, category)] = (cr + prior_strength * prior) / (cn + prior_strength)

    def __call__(self, expert: str, category: str | None) -> float:
        return self.table.get((expert, category or ""), self.overall[expert])


def route_topk(
    competence: CategoryCompetence, experts: Sequence[str], k: int
) -> Callable[[Question], list[str]]:
    def route(question: Question) -> list[str]:
        ranked = sorted(experts, key=lambda e: (-competence(e, question.category), e))
        return ranked[:k]

    return route


def expert_answers(question: Question, experts: Sequence[str], preds: Preds, competence: CategoryCompetence):
    return [
        ExpertAnswer(
            expert=e,
            text=f"The answer is ({preds[e][question.id]})." if preds[e].get(question.id) else "",
            choice=preds[e].get(question.id),
            competence=competence(e, question.category),
        )
        for e in experts
    ]


def summary(hits: Sequence[bool]) -> dict:
    n, right = len(hits), sum(hits)
    low, high = wilson_interval(right, n)
    return {
        "accuracy": round(right / n, 4),
        "ci95": [round(low, 4), round(high, 4)],
        "n": n,
        "correct": right,
    }


def paired_difference(a: Sequence[bool], b: Sequence[bool], *, seed: int = 0, rounds: int = 2000) -> dict:
    """Accuracy of a minus b on the same questions, with a paired bootstrap 95% interval."""
    import numpy as np

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    return {
        "difference": round(float(diff.mean()), 4),
        "ci95": [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)],
    }


def evaluate(
    test: Sequence[Question],
    preds: Preds,
    competence: CategoryCompetence,
    route: Callable[[Question], list[str]],
    experts: Sequence[str],
) -> tuple[dict[str, list[bool]], dict[str, float]]:
    best = max(experts, key=lambda e: (competence.overall[e], e))
    hits: dict[str, list[bool]] = {name: [] for name in (
        "single_best", "majority_all", "weighted_all", "weighted_all_kclass",
        "majority_routed", "weighted_routed", "weighted_routed_kclass", "oracle_all", "oracle_routed",
    )}
    confidence: dict[str, list[float]] = {"majority_all": [], "weighted_all_kclass": []}
    for question in test:
        everyone = expert_answers(question, experts, preds, competence)
        routed_names = set(route(question))
        routed = [a for a in everyone if a.expert in routed_names]
        k_options = len(question.options)
        results: dict[str, AggregationResult] = {
            "majority_all": majority(everyone),
            "weighted_all": weighted(everyone),
            "weighted_all_kclass": weighted(everyone, n_options=k_options),
            "majority_routed": majority(routed),
            "weighted_routed": weighted(routed),
            "weighted_routed_kclass": weighted(routed, n_options=k_options),
        }
        for name, result in results.items():
            hits[name].append(result.choice == question.answer)
        for name in confidence:
            confidence[name].append(results[name].confidence)
        hits["single_best"].append(preds[best].get(question.id) == question.answer)
        hits["oracle_all"].append(any(a.choice == question.answer for a in everyone))
        hits["oracle_routed"].append(any(a.choice == question.answer for a in routed))
    calibration = {}
    for name, values in confidence.items():
        # accuracy among the more confident half: a check that confidence means something
        order = sorted(range(len(values)), key=lambda i: -values[i])[: len(values) // 2]
        calibration[name] = round(sum(hits[name][i] for i in order) / max(1, len(order)), 4)
    return hits, calibration


def router_reference() -> dict | None:
    """The router's own figures (benchmarks/results/routing.json), if written yet."""
    path = ROOT / "benchmarks" / "results" / "routing.json"
    if not path.is_file():
        return None
    try:
        return {"file": str(path.relative_to(ROOT)), "content": json.loads(path.read_text())}
    except json.JSONDecodeError:
        return {"file": str(path.relative_to(ROOT)), "error": "not valid JSON"}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=3, help="Experts routed per question.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the train/test split of question ids.")
    parser.add_argument("--train-fraction", type=float, default=0.5, help="Share of question ids in train.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    started = time.perf_counter()
    questions = {q.id: q for q in load_mmlu_pro(data_dir() / "benchmarks", "test")}
    preds = load_preds(replay_path(), SMALL_POOL)
    answered = [qid for qid in questions if all(qid in preds[e] for e in SMALL_POOL)]
    train_ids, test_ids = split_ids(answered, seed=args.seed, train_fraction=args.train_fraction)
    train = [questions[i] for i in sorted(train_ids)]
    test = [questions[i] for i in sorted(test_ids)]
    competence = CategoryCompetence(train, preds)
    route = route_topk(competence, SMALL_POOL, args.k)
    hits, calibration = evaluate(test, preds, competence, route, SMALL_POOL)

    methods = {name: summary(values) for name, values in hits.items()}
    comparisons = {
        f"{a}-{b}": paired_difference(hits[a], hits[b], seed=args.seed)
        for a, b in (
            ("weighted_all", "majority_all"),
            ("weighted_all_kclass", "majority_all"),
            ("majority_routed", "majority_all"),
            ("weighted_routed", "majority_routed"),
            ("weighted_routed_kclass", "majority_routed"),
            ("majority_all", "single_best"),
        )
    }
    report = {
        "benchmark": "mmlu_pro",
        "pool": "replay-small",
        "experts": list(SMALL_POOL),
        "split": {"seed": args.seed, "train_fraction": args.train_fraction, "by": "question_id",
                  "train": len(train), "test": len(test)},
        "competence": (
            f"per-category accuracy on train, Beta prior on overall accuracy ({PRIOR_STRENGTH:g} answers)"
        ),
        "routing": f"top-{args.k} experts by per-category competence (dataset category)",
        "methods": methods,
        "paired_differences": comparisons,
        "accuracy_in_more_confident_half": calibration,
        "router_reference": router_reference(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_report(report, args.out)
    print(f"test questions: {len(test)} (train {len(train)}), k={args.k}")
    for name, row in methods.items():
        print(f"  {name:24s} {row['accuracy']:.3f}  [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
    for name, row in comparisons.items():
        print(f"  {name:45s} {row['difference']:+.3f}  [{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]")
    print(f"wrote {args.out}")
    return report


def write_report(report: Mapping, out: Path) -> None:
    """Write the report, keeping sections other scripts own (``live_default_pool``)."""
    previous = {}
    if out.is_file():
        try:
            previous = json.loads(out.read_text())
        except json.JSONDecodeError:
            previous = {}
    merged = dict(report)
    for key in ("live_default_pool",):
        if key in previous:
            merged[key] = previous[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
