"""Vote aggregators on the replay small pool: majority vs competence-weighted, all vs routed.

Six recorded 6B-8B instruct models (pools/replay-small) answer the MMLU-Pro test questions
through ``Orchestrator.answer_batch`` (policy ``all``; a choice is the benchmark's extraction
of the recorded text). The questions are split by ``eval.splits.split`` (seeded, by question
id; the split benchmarks/routing.py uses) into a train part, on which a copy of the pool is
profiled by ``orchestrator.profiling.profile_pool`` (``coe profile``'s code), and a disjoint
test part, reported. A question's skill weights come from the profiled pool's router
(``--skills router``: classifier and topics) or from its dataset category (``labels``); an
expert's competence on it is its skill-weighted smoothed accuracy (router.expected_accuracy);
the routed experts are ``Orchestrator.router(policy, k)``'s choice. Every vote is counted by the
question's judge and judged right or wrong by it, through ``_replay.Ballot`` (the routing and
cost routing benchmarks count with the same ballots). On the test part:

    single_best            the expert with the best train profile, alone
    majority_all           aggregators.majority, all six (the same figure as routing.py's "all";
                           its ties go to the larger summed competence, so with other skill
                           weights, as in the dataset-label block, it may move slightly)
    weighted_all           aggregators.weighted with n_options=K: log((K-1) p/(1-p)), p = the
                           expert's competence: the odds of being right against one given wrong
                           option (the vote we use)
    weighted_all_binary    log(p/(1-p)): two-option log-odds, kept for comparison; with ten
                           options most experts have p < 0.5 and vote against themselves
    majority_routed        majority over the experts the router chose (--policy, --k)
    weighted_routed        weighted over the routed experts (and _binary)
    oracle_*               some expert was right (upper bound of any aggregator)

and, per routing policy, the same votes over that policy's experts (``by_policy``).
Intervals are ``aggregators.wilson_interval``.

    python benchmarks/aggregation.py [--policy topk] [--k 3] [--skills both]   # prints
    python benchmarks/aggregation.py --write   # and writes benchmarks/results/aggregation.json
                                               # (keeping aggregator_live.py's sections)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from _replay import POOL_DIR, Ballot, Ballots, Choices, ballots, expert_choices, replay_pool

from aggregators import AggregationResult, wilson_interval
from eval import Benchmark, Question, get_benchmark, split
from orchestrator import Orchestrator, load_settings
from orchestrator.profiling import profile_pool
from router import POLICIES
from skills import cached_embed, make_embedder, question_skills

log = logging.getLogger("benchmarks.aggregation")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "aggregation.json"
POLICIES_COMPARED = ("topk", "symbolic", "category", "adaptive")
VOTES = ("majority", "weighted", "weighted_kclass")
OTHER_SECTIONS = ("live_default_pool", "live_aggregator_selection")  # written by aggregator_live.py

Weights = list[dict[str, float]]
"""Per test question: skill -> weight."""


def label_weights(questions: Sequence[Question]) -> Weights:
    """Skill weights from the dataset's own category label."""
    return [{skill: 1.0 for skill in question_skills(q)} for q in questions]


def summary(hits: Sequence[bool]) -> dict:
    n, right = len(hits), sum(hits)
    low, high = wilson_interval(right, n)
    ci95 = [round(low, 4), round(high, 4)]
    return {"accuracy": round(right / n, 4), "ci95": ci95, "n": n, "correct": right}


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


def votes(ballot: Ballot, experts: Sequence[str] | None, n_options: int) -> dict[str, AggregationResult]:
    """Each vote of ``experts`` (all when None) on one ballot, counted by the question's judge."""
    return {
        "majority": ballot.majority(experts),
        "weighted": ballot.weighted(experts),
        "weighted_kclass": ballot.weighted(experts, n_options=n_options),
    }


def evaluate(
    test: Sequence[Question],
    book: Ballots,
    best: str,
    routes: Mapping[str, list[list[str]]],
) -> tuple[dict[str, list[bool]], dict[str, list[float]], dict[str, list[int]]]:
    """Hits per method (``<vote>_all``, ``<vote>_<policy>``, oracles; ``best`` alone as
    ``single_best``), confidences and routed k, every answer judged by its ballot."""
    hits: dict[str, list[bool]] = {"single_best": [], "oracle_all": []}
    confidence: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {policy: [] for policy in routes}
    for index, question in enumerate(test):
        ballot = book[question.id]
        groups: dict[str, Sequence[str] | None] = {"all": None}
        for policy, chosen in routes.items():
            groups[policy] = chosen[index]
            sizes[policy].append(len(set(chosen[index])))
        for group, experts in groups.items():
            for vote, result in votes(ballot, experts, len(question.options)).items():
                hits.setdefault(f"{vote}_{group}", []).append(ballot.right(result.choice))
                confidence.setdefault(f"{vote}_{group}", []).append(result.confidence)
            if group != "all":
                hits.setdefault(f"oracle_{group}", []).append(ballot.any_right(experts))
        hits["single_best"].append(ballot.right(ballot.votes[best].choice))
        hits["oracle_all"].append(ballot.any_right())
    return hits, confidence, sizes


def confident_half(hits: Sequence[bool], confidence: Sequence[float]) -> float:
    """Accuracy among the more confident half: does the confidence measure mean something?"""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])[: len(confidence) // 2]
    return round(sum(hits[i] for i in order) / max(1, len(order)), 4)


def measure(
    coe: Orchestrator,
    bench: Benchmark,
    test: Sequence[Question],
    choices: Choices,
    weights: Weights,
    *,
    policy: str,
    k: int,
    seed: int,
) -> dict:
    """Every method's accuracy on ``test`` with these skill weights, routed by the SDK's routers."""
    policies = list(dict.fromkeys([policy, *POLICIES_COMPARED]))
    ids = [q.id for q in test]
    routes = {name: [d.expert_names for d in coe.router(name, k).route_weights(weights, ids)] for name in policies}
    profile = coe.router(policy, k).profile
    book = ballots(bench, test, choices, profile, weights)
    hits, confidence, sizes = evaluate(test, book, profile.best_expert(), routes)
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
        print(f"  {name:24s} {row['accuracy']:.4f}  [{row['ci95'][0]:.4f}, {row['ci95'][1]:.4f}]")
    for policy, row in block["by_policy"].items():
        cells = "  ".join(f"{vote} {row[vote]['accuracy']:.4f}" for vote in VOTES)
        oracle = row["oracle"]["accuracy"]
        print(f"  policy {policy:10s} k~{row['mean_experts']:.2f}  {cells}  oracle {oracle:.4f}")
    for name, row in block["paired_differences"].items():
        print(f"  {name:45s} {row['difference']:+.4f}  [{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]")


def run(args: argparse.Namespace, workdir: Path) -> dict:
    started = time.perf_counter()
    settings = load_settings(data_dir=args.data_dir)
    bench = get_benchmark("mmlu_pro")
    every = bench.questions(settings.data_dir)
    answering = Orchestrator(settings, pool=replay_pool(settings, workdir / "answers", args.pool_dir))
    choices = expert_choices(answering, every, bench)
    questions = [q for q in every if q.id in choices]
    train, test = split(questions, args.train_fraction, args.seed)
    pool = replay_pool(settings, workdir / "train", args.pool_dir)
    profile_pool(Orchestrator(settings, pool=pool), train)
    coe = Orchestrator(settings, pool=pool)
    blocks = {}
    for skills in ("router", "labels") if args.skills == "both" else (args.skills,):
        if skills == "labels":
            weights = label_weights(test)
        else:
            embedder = make_embedder()
            vectors = cached_embed(embedder, [q.text for q in questions], settings.embeddings_dir)  # routing.py's cache
            row = {q.id: i for i, q in enumerate(questions)}
            scorer = coe.router(args.policy, args.k).scorer
            test_vectors = vectors[[row[q.id] for q in test]]
            weights = scorer.weights_from_vectors(test_vectors)  # type: ignore[attr-defined]
        blocks[skills] = measure(coe, bench, test, choices, weights, policy=args.policy, k=args.k, seed=args.seed)
    main_skills = next(iter(blocks))
    profile = coe.router(args.policy, args.k).profile
    report = {
        "benchmark": "mmlu_pro",
        "pool": "replay-small",
        "experts": profile.experts,
        "answers": "Orchestrator.answer_batch (policy all), choices from answer.trace.experts",
        "split": {
            "seed": args.seed,
            "train_fraction": args.train_fraction,
            "by": "eval.splits.split (question id)",
            "train": len(train),
            "test": len(test),
        },
        "competence": (
            "the pool's profile after profile_pool on the train part (per-skill smoothed accuracy, "
            f"Beta prior on overall accuracy, {profile.prior_strength:g} pseudo-answers), skill-weighted "
            "(router.expected_accuracy)"
        ),
        "skills_from": {"labels": "dataset category", "router": "the profiled pool's router (classifier + topics)"}[
            main_skills
        ],
        **blocks[main_skills],
        "routing_figures": "benchmarks/results/routing.json (same split, same profile, same vote)",
    }
    if "labels" in blocks and main_skills != "labels":
        report["with_dataset_labels"] = blocks["labels"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def write_report(report: Mapping, out: Path) -> None:
    """Write the report, keeping the sections aggregator_live.py owns."""
    previous = {}
    if out.is_file():
        try:
            previous = json.loads(out.read_text())
        except json.JSONDecodeError:
            previous = {}
    merged = dict(report)
    for key in OTHER_SECTIONS:
        if key in previous:
            merged[key] = previous[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default="topk", choices=sorted(POLICIES), help="Policy of *_routed.")
    parser.add_argument("--k", type=int, default=3, help="Experts per question (policies that take k).")
    parser.add_argument(
        "--skills",
        default="both",
        choices=("router", "labels", "both"),
        help="Skills of a test question: the profiled pool's router, the dataset label, or both.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split.")
    parser.add_argument("--train-fraction", type=float, default=0.5, help="Share of question ids in train.")
    parser.add_argument("--data-dir", type=Path, default=None, help="Shared data (default: the settings').")
    parser.add_argument("--pool-dir", type=Path, default=POOL_DIR, help="The replay pool measured.")
    parser.add_argument("--write", action="store_true", help=f"Write the figures to {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where --write writes.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.pool_dir = args.pool_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="aggregation-bench-") as workdir:
        report = run(args, Path(workdir))
    split_ = report["split"]
    print(f"test questions: {split_['test']} (train {split_['train']}), routing {args.policy} k={args.k}")
    show(f"skills from {report['skills_from']}:", report)
    if "with_dataset_labels" in report:
        show("skills from dataset category:", report["with_dataset_labels"])
    if args.write:
        write_report(report, args.out)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
