"""Vote aggregators on the replay small pool: majority vs competence-weighted, all vs routed.

Six recorded 6B-8B instruct models answer the MMLU-Pro test questions (../shared/data/replay).
Question ids are split with a seed into a train part, from which the skill ``Profile`` is
built (skills.build_profile_from_replay: per-skill smoothed accuracy), and a disjoint test
part, reported. A question's skills come from its dataset category (``--scorer labels``) or
from the router's embedding classifier trained on the train part (``--scorer classifier``).
An expert's competence on a question is its skill-weighted smoothed accuracy
(router.expected_accuracy); the routed experts are the ``Router``'s choice. On the test part:

    single_best            the expert with the best train accuracy, alone
    majority_all           one vote per expert, all six
    weighted_all           log-odds weights log((K-1) p/(1-p)), p = the expert's competence,
                           K = number of options: the odds of being right against one given
                           wrong option (the vote we use)
    weighted_all_binary    log(p/(1-p)): two-option log-odds, kept for comparison; with ten
                           options most experts have p < 0.5 and vote against themselves
    majority_routed        majority over the experts the router chose (--policy, --k)
    weighted_routed        weighted over the routed experts (and _binary)
    oracle_*               some expert was right (upper bound of any aggregator)

and, per routing policy, the same votes over that policy's experts (``by_policy``).

    .venv/bin/python benchmarks/aggregation.py [--policy topk] [--k 3] [--scorer labels]

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
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from aggregators import AggregationResult, ExpertAnswer, majority, weighted, wilson_interval  # noqa: E402
from common.recordings import iter_records  # noqa: E402
from eval.benchmarks import Question, load_mmlu_pro  # noqa: E402
from eval.data import data_dir, replay_path  # noqa: E402
from orchestrator.pool import small_replay_models  # noqa: E402
from router import POLICIES, Router, expected_accuracy  # noqa: E402
from skills import build_profile_from_replay, question_skills  # noqa: E402
from skills.profile import Profile  # noqa: E402

log = logging.getLogger("benchmarks.aggregation")

RESULTS = ROOT / "benchmarks" / "results" / "aggregation.json"
SMALL_POOL = tuple(small_replay_models())  # the six small instruct models of pools/replay-small
POLICIES_COMPARED = ("topk", "symbolic", "category", "adaptive")

Preds = dict[str, dict[str, str | None]]  # expert -> question id -> recorded choice
Weights = list[dict[str, float]]  # per test question: skill -> weight


def split_ids(ids: Sequence[str], *, seed: int, train_fraction: float) -> tuple[set[str], set[str]]:
    """Seeded split of question ids into disjoint train and test sets.

    The same convention as benchmarks/routing.py (ids in numeric order, shuffled by
    ``random.Random(seed)``, the first ``int(n * fraction)`` to train), so both report on
    the same test questions.
    """
    ordered = sorted(ids, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))
    random.Random(seed).shuffle(ordered)
    cut = int(len(ordered) * train_fraction)
    return set(ordered[:cut]), set(ordered[cut:])


def load_preds(path: Path, experts: Sequence[str]) -> Preds:
    preds: Preds = {e: {} for e in experts}
    for record in iter_records(path, experts):
        preds[record.model][record.question_id] = record.pred
    return preds


class KnownWeights:
    """A scorer whose skill weights were computed beforehand (dataset labels or the classifier)."""

    def __init__(self, texts: Sequence[str], weights: Weights) -> None:
        self._by_text = dict(zip(texts, weights, strict=True))

    def skill_weights(self, texts: Sequence[str]) -> Weights:
        return [self._by_text[t] for t in texts]


def label_weights(questions: Sequence[Question]) -> Weights:
    """Skill weights from the dataset's own category label."""
    return [{skill: 1.0 for skill in question_skills(q)} for q in questions]


def classifier_weights(
    every: Sequence[Question], train: Sequence[Question], test: Sequence[Question], seed: int
) -> Weights:
    """Skill weights from the router's embedding classifier, trained on the train questions' labels.

    Every question is embedded in file order, as benchmarks/routing.py does, so the two share
    one embedding cache.
    """
    from router import ClassifierScorer, train_classifier
    from skills import cached_embed, make_embedder

    embedder = make_embedder()
    vectors = cached_embed(embedder, [q.text for q in every])
    row = {q.id: i for i, q in enumerate(every)}
    train_vectors = vectors[[row[q.id] for q in train]]
    test_vectors = vectors[[row[q.id] for q in test]]
    labels = [question_skills(q)[0] for q in train]
    classifier = train_classifier(None, labels, embedder, vectors=train_vectors, seed=seed)
    return ClassifierScorer(classifier, embedder).weights_from_vectors(test_vectors)


def expert_answers(question: Question, preds: Preds, competence: Mapping[str, float]) -> list[ExpertAnswer]:
    return [
        ExpertAnswer(
            expert=e,
            text=f"The answer is ({preds[e][question.id]})." if preds[e].get(question.id) else "",
            choice=preds[e].get(question.id),
            competence=competence[e],
        )
        for e in preds
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


VOTES = ("majority", "weighted", "weighted_kclass")


def votes(answers: list[ExpertAnswer], n_options: int) -> dict[str, AggregationResult]:
    return {
        "majority": majority(answers),
        "weighted": weighted(answers),
        "weighted_kclass": weighted(answers, n_options=n_options),
    }


def evaluate(
    test: Sequence[Question],
    preds: Preds,
    profile: Profile,
    weights: Weights,
    routes: Mapping[str, list[list[str]]],
) -> tuple[dict[str, list[bool]], dict[str, list[float]], dict[str, list[int]]]:
    """Hits per method (``<vote>_all``, ``<vote>_<policy>``, oracles), confidences and routed k."""
    best = profile.best_expert()
    hits: dict[str, list[bool]] = {"single_best": [], "oracle_all": []}
    confidence: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {policy: [] for policy in routes}
    for index, question in enumerate(test):
        competence = expected_accuracy(profile, weights[index])
        everyone = expert_answers(question, preds, competence)
        groups = {"all": everyone}
        for policy, chosen in routes.items():
            names = set(chosen[index])
            groups[policy] = [a for a in everyone if a.expert in names]
            sizes[policy].append(len(names))
        for group, answers in groups.items():
            for vote, result in votes(answers, len(question.options)).items():
                hits.setdefault(f"{vote}_{group}", []).append(result.choice == question.answer)
                confidence.setdefault(f"{vote}_{group}", []).append(result.confidence)
            if group != "all":
                right = any(a.choice == question.answer for a in answers)
                hits.setdefault(f"oracle_{group}", []).append(right)
        hits["single_best"].append(preds[best].get(question.id) == question.answer)
        hits["oracle_all"].append(any(a.choice == question.answer for a in everyone))
    return hits, confidence, sizes


def confident_half(hits: Sequence[bool], confidence: Sequence[float]) -> float:
    """Accuracy among the more confident half: does the confidence measure mean something?"""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])[: len(confidence) // 2]
    return round(sum(hits[i] for i in order) / max(1, len(order)), 4)


def router_reference() -> dict | None:
    """The router's own figures (benchmarks/results/routing.json, same split), if written yet."""
    path = ROOT / "benchmarks" / "results" / "routing.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
        return {
            "file": str(path.relative_to(ROOT)),
            "seed": content.get("seed"),
            "n_test": content.get("n_test"),
            "policies": {
                name: {key: row.get(key) for key in ("accuracy", "ci95", "experts_per_question")}
                for name, row in content.get("policies", {}).items()
            },
            "reference": content.get("reference"),
        }
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        return {"file": str(path.relative_to(ROOT)), "error": f"unreadable: {exc}"}


def measure(
    test: Sequence[Question],
    preds: Preds,
    profile: Profile,
    weights: Weights,
    *,
    policy: str,
    k: int,
    seed: int,
) -> dict:
    """Every method's accuracy on ``test`` with these skill weights, routed by ``policy``."""
    scorer = KnownWeights([q.text for q in test], weights)
    policies = list(dict.fromkeys([policy, *POLICIES_COMPARED]))
    routes = {}
    for name in policies:
        router = Router(profile, scorer, name, k=k, seed=seed)
        routes[name] = [d.expert_names for d in router.route([q.text for q in test], [q.id for q in test])]
    hits, confidence, sizes = evaluate(test, preds, profile, weights, routes)
    keys = {
        "single_best": "single_best",
        "majority_all": "majority_all",
        "weighted_all": "weighted_kclass_all",
        "weighted_all_binary": "weighted_all",
        "majority_routed": f"majority_{policy}",
        "weighted_routed": f"weighted_kclass_{policy}",
        "weighted_routed_binary": f"weighted_{policy}",
        "oracle_all": "oracle_all",
        "oracle_routed": f"oracle_{policy}",
    }
    pairs = (
        ("weighted_all", "majority_all"),
        ("weighted_all_binary", "majority_all"),
        ("majority_routed", "majority_all"),
        ("weighted_routed", "majority_routed"),
        ("weighted_routed_binary", "majority_routed"),
        ("majority_all", "single_best"),
    )
    return {
        "routing": {"policy": policy, "k": k, "seed": seed},
        "methods": {name: summary(hits[key]) for name, key in keys.items()},
        "by_policy": {
            name: {
                "mean_experts": round(sum(sizes[name]) / len(sizes[name]), 3),
                **{vote: summary(hits[f"{vote}_{name}"]) for vote in VOTES},
                "oracle": summary(hits[f"oracle_{name}"]),
            }
            for name in policies
        },
        "paired_differences": {
            f"{x}-{y}": paired_difference(hits[keys[x]], hits[keys[y]], seed=seed) for x, y in pairs
        },
        "accuracy_in_more_confident_half": {
            name: confident_half(hits[keys[name]], confidence[keys[name]])
            for name in ("majority_all", "weighted_all", "majority_routed", "weighted_routed")
        },
    }


def show(title: str, block: Mapping) -> None:
    print(title)
    for name, row in block["methods"].items():
        print(f"  {name:24s} {row['accuracy']:.3f}  [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
    for policy, row in block["by_policy"].items():
        cells = "  ".join(f"{vote} {row[vote]['accuracy']:.3f}" for vote in VOTES)
        oracle = row["oracle"]["accuracy"]
        print(f"  policy {policy:10s} k~{row['mean_experts']:.2f}  {cells}  oracle {oracle:.3f}")
    for name, row in block["paired_differences"].items():
        print(f"  {name:45s} {row['difference']:+.3f}  [{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default="topk", choices=sorted(POLICIES), help="Policy of *_routed.")
    parser.add_argument("--k", type=int, default=3, help="Experts per question (policies that take k).")
    parser.add_argument("--scorer", default="both", choices=("classifier", "labels", "both"),
                        help="Skills of a test question: router's classifier, dataset label, or both.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split and of random policies.")
    parser.add_argument("--train-fraction", type=float, default=0.5, help="Share of question ids in train.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    started = time.perf_counter()
    preds = load_preds(replay_path(), SMALL_POOL)
    every = [
        q
        for q in load_mmlu_pro(data_dir() / "benchmarks", "test")
        if all(q.id in preds[e] for e in SMALL_POOL)
    ]
    questions = {q.id: q for q in every}
    answered = list(questions)
    train_ids, test_ids = split_ids(answered, seed=args.seed, train_fraction=args.train_fraction)
    train = [questions[i] for i in sorted(train_ids)]
    test = [questions[i] for i in sorted(test_ids)]
    profile = build_profile_from_replay(
        replay_path(), train, {e: e for e in SMALL_POOL}, name="aggregation-bench"
    )
    blocks = {}
    for scorer in ("classifier", "labels") if args.scorer == "both" else (args.scorer,):
        if scorer == "labels":
            weights = label_weights(test)
        else:
            weights = classifier_weights(every, train, test, args.seed)
        blocks[scorer] = measure(test, preds, profile, weights, policy=args.policy, k=args.k, seed=args.seed)
    main_scorer = next(iter(blocks))
    report = {
        "benchmark": "mmlu_pro",
        "pool": "replay-small",
        "experts": list(SMALL_POOL),
        "split": {"seed": args.seed, "train_fraction": args.train_fraction, "by": "question_id",
                  "train": len(train), "test": len(test)},
        "competence": (
            "skills.Profile from the train part (per-skill smoothed accuracy, Beta prior on overall "
            f"accuracy, {profile.prior_strength:g} pseudo-answers), skill-weighted (router.expected_accuracy)"
        ),
        "skills_from": {
            "labels": "dataset category", "classifier": "router's embedding classifier"
        }[main_scorer],
        **blocks[main_scorer],
        "router_reference": router_reference(),
    }
    if "labels" in blocks and main_scorer != "labels":
        report["with_dataset_labels"] = blocks["labels"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, args.out)
    print(f"test questions: {len(test)} (train {len(train)}), routing {args.policy} k={args.k}")
    for scorer, block in blocks.items():
        show(f"skills from {scorer}:", block)
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
    for key in ("live_default_pool", "live_aggregator_selection"):
        if key in previous:
            merged[key] = previous[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
