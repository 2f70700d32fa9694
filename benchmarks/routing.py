"""Routing benchmark on the recorded MMLU-Pro answers of pools/replay-small's six experts.

Every step is the product's own:

- the questions are split by ``eval.splits.split`` (seeded, keyed by question id) into a
  train part and a disjoint test part;
- a copy of the pool is profiled on the train part by ``orchestrator.profiling.profile_pool``
  (what ``coe profile`` runs: the per-skill profile, the skill classifier and the topics);
- every expert answers every question once through ``Orchestrator.answer_batch`` (policy
  ``all``: a replay expert's answer does not depend on who else was asked); a choice is the
  benchmark's extraction of the recorded text, read from ``answer.trace.experts``;
- per policy, ``Orchestrator.router(policy, k)`` of the profiled copy chooses the experts,
  whose answers ``aggregators.majority`` combines with the question's judge (its tie rule),
  each expert's competence being its expected accuracy on the question's skill weights
  (``router.expected_accuracy``), and the judge says whether the result is right: both through
  ``_replay.Ballot``, which the aggregation and cost routing benchmarks count with too;
- intervals are ``aggregators.wilson_interval``.

adaptive's two knobs (cost, spread) are also tuned on a second split of the train part; the
policies table is the SDK's defaults, the tuned values are reported beside it.

    python benchmarks/routing.py            # prints the figures
    python benchmarks/routing.py --write    # and writes benchmarks/results/routing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from _replay import POOL_DIR, Ballots, Choices, ballots, expert_choices, replay_pool

from aggregators import wilson_interval
from eval import Benchmark, Question, get_benchmark, split
from orchestrator import Orchestrator, Settings, load_settings
from orchestrator.profiling import profile_pool
from router import RouteDecision, Router, Selection
from router.scorers import Scorer
from skills import cached_embed, make_embedder, question_skills

log = logging.getLogger("benchmarks.routing")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "routing.json"
POLICY_K: dict[str, int | None] = {
    "symbolic": 3,
    "topk": 3,
    "category": 1,
    "single-best": 1,
    "random": 3,
    "all": None,
    "adaptive": None,
}
COSTS = (0.0, 0.005, 0.01, 0.015, 0.02)
SPREADS = (2.0, 3.0, 4.0, 5.0, 6.0)
PUBLISHED = {"best_single": 0.442, "majority_all": 0.469, "oracle": 0.726}


@dataclass(frozen=True)
class Score:
    accuracy: float
    ci95: tuple[float, float]
    experts_per_question: float
    per_category: dict[str, float]


def profiled(settings: Settings, questions: Sequence[Question], directory: Path, pool_dir: Path) -> Orchestrator:
    """An orchestrator on a copy of the pool profiled on ``questions`` by ``coe profile``'s code."""
    pool = replay_pool(settings, directory, pool_dir)
    profile_pool(Orchestrator(settings, pool=pool), list(questions))
    return Orchestrator(settings, pool=pool)


def score(decisions: Sequence[RouteDecision], questions: Sequence[Question], book: Ballots) -> Score:
    """How often the routed experts' majority is right (``_replay.Ballot.majority_right``)."""
    right, per_cat = 0, {}
    for decision, question in zip(decisions, questions, strict=True):
        ok = book[question.id].majority_right(decision.expert_names)
        right += ok
        cat = per_cat.setdefault(question.category or "none", [0, 0])
        cat[0] += ok
        cat[1] += 1
    n = len(questions)
    low, high = wilson_interval(right, n)
    return Score(
        accuracy=round(right / n, 4),
        ci95=(round(low, 4), round(high, 4)),
        experts_per_question=round(sum(len(d.expert_names) for d in decisions) / n, 3),
        per_category={c: round(r / t, 4) for c, (r, t) in sorted(per_cat.items())},
    )


def tune_adaptive(
    settings: Settings,
    pool_dir: Path,
    bench: Benchmark,
    train: Sequence[Question],
    choices: Choices,
    vectors_of: Callable[[Sequence[Question]], np.ndarray],
    *,
    seed: int,
    max_experts: float,
    workdir: Path,
) -> tuple[Selection, dict]:
    """(cost, spread) with the best accuracy under ``max_experts`` on a second split of the train part."""
    inner_fit, inner_eval = split(train, 0.6, seed + 1)
    router = profiled(settings, inner_fit, workdir, pool_dir).router("adaptive")
    weights = router.scorer.weights_from_vectors(vectors_of(inner_eval))  # type: ignore[attr-defined]
    book = ballots(bench, inner_eval, choices, router.profile, weights)
    ids = [q.id for q in inner_eval]
    n_experts = len(router.profile.experts)
    grid = {}
    for cost in COSTS:
        for spread in SPREADS:
            selection = Selection(cost=cost, spread=spread, max_k=n_experts)
            decisions = Router(router.profile, router.scorer, "adaptive", selection=selection).route_weights(
                weights, ids
            )
            grid[(cost, spread)] = score(decisions, inner_eval, book)
    allowed = {key: s for key, s in grid.items() if s.experts_per_question < max_experts} or grid
    best = max(allowed, key=lambda key: (allowed[key].accuracy, -allowed[key].experts_per_question))
    log.info(
        "adaptive: tuned cost=%s spread=%s (inner accuracy %.4f, %.2f experts)",
        *best,
        grid[best].accuracy,
        grid[best].experts_per_question,
    )
    tuned = Selection(cost=best[0], spread=best[1], max_k=n_experts)
    return tuned, {
        "cost": best[0],
        "spread": best[1],
        "inner_accuracy": grid[best].accuracy,
        "inner_experts_per_question": grid[best].experts_per_question,
    }


def category_ceilings(
    train: Sequence[Question],
    test: Sequence[Question],
    train_book: Ballots,
    test_book: Ballots,
    experts: Sequence[str],
) -> dict:
    """How far choosing experts per (true) category can go: for each category the subset of
    experts whose vote was best, picked on the train part, and picked on the test part itself
    (in-sample: an optimistic bound, not a result)."""
    subsets = [list(c) for size in range(1, len(experts) + 1) for c in combinations(experts, size)]

    def rights(questions: Sequence[Question], book: Ballots) -> dict[str, list[list[bool]]]:
        out: dict[str, list[list[bool]]] = {}
        for q in questions:
            row = [book[q.id].majority_right(s) for s in subsets]
            out.setdefault(q.category or "none", []).append(row)
        return out

    on_train, on_test = rights(train, train_book), rights(test, test_book)
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


def throughput(router: Router, texts: Sequence[str]) -> tuple[float, float, float]:
    """Questions/s routing a batch (embedding included; best of 2 runs), and the median and
    fastest ms for one question (of 30). The machine is shared: the best runs show the cost."""
    router.route(list(texts[:8]))  # warm up: model load, first call
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        router.route(list(texts))
        runs.append(time.perf_counter() - started)
    singles = []
    for text in texts[:30]:
        started = time.perf_counter()
        router.route([text])
        singles.append((time.perf_counter() - started) * 1000)
    singles.sort()
    return len(texts) / min(runs), singles[len(singles) // 2], singles[0]


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    settings = load_settings(data_dir=args.data_dir)
    bench = get_benchmark("mmlu_pro")
    every = bench.questions(settings.data_dir)
    answering = Orchestrator(settings, pool=replay_pool(settings, workdir / "answers", args.pool_dir))
    started = time.perf_counter()
    choices = expert_choices(answering, every, bench)
    questions = [q for q in every if q.id in choices]
    log.info(
        "%d questions answered by every expert through the SDK in %.1f s", len(questions), time.perf_counter() - started
    )
    embedder = make_embedder()
    vectors = cached_embed(embedder, [q.text for q in questions], settings.embeddings_dir)
    row = {q.id: i for i, q in enumerate(questions)}

    def vectors_of(subset: Sequence[Question]) -> np.ndarray:
        return vectors[[row[q.id] for q in subset]]

    train, test = split(questions, args.train_fraction, args.seed)
    coe = profiled(settings, train, workdir / "train", args.pool_dir)
    base = coe.router("adaptive")
    profile, mixture = base.profile, base.scorer
    categories: Scorer | None = coe.pool.artefacts.latest_scorer(embedder, topic_share=0.0)
    assert categories is not None, "profile_pool trained the classifier"
    weights = mixture.weights_from_vectors(vectors_of(test))  # type: ignore[attr-defined]
    category_weights = categories.weights_from_vectors(vectors_of(test))  # type: ignore[attr-defined]
    predicted = [max(w, key=w.get) for w in category_weights]
    classifier_accuracy = sum(p == question_skills(q)[0] for p, q in zip(predicted, test)) / len(test)
    book = ballots(bench, test, choices, profile, weights)
    ids = [q.id for q in test]

    policies: dict[str, dict] = {}
    for name, k in POLICY_K.items():
        router = coe.router(name, k)
        policies[name] = asdict(score(router.route_weights(weights, ids), test, book))
        log.info(
            "%-11s accuracy %.4f %s, %.2f experts/question",
            name,
            policies[name]["accuracy"],
            policies[name]["ci95"],
            policies[name]["experts_per_question"],
        )

    tuned, tuning = tune_adaptive(
        settings,
        args.pool_dir,
        bench,
        train,
        choices,
        vectors_of,
        seed=args.seed,
        max_experts=args.max_experts,
        workdir=workdir / "inner",
    )
    ablations = {
        "adaptive_tuned": Router(profile, mixture, "adaptive", selection=tuned).route_weights(weights, ids),
        "adaptive_categories_only": Router(profile, categories, "adaptive").route_weights(category_weights, ids),
        "topk_categories_only": Router(profile, categories, "topk", k=3).route_weights(category_weights, ids),
    }
    ablation_scores = {label: asdict(score(decisions, test, book)) for label, decisions in ablations.items()}

    train_weights = mixture.weights_from_vectors(vectors_of(train))  # type: ignore[attr-defined]
    train_book = ballots(bench, train, choices, profile, train_weights)
    ceilings = category_ceilings(train, test, train_book, book, profile.experts)
    oracle = sum(book[q.id].any_right() for q in test) / len(test)
    qps, ms_single, ms_fastest = throughput(base, [q.text for q in test[:512]])
    return {
        "benchmark": "mmlu_pro replay",
        "pool": (str(args.pool_dir.relative_to(ROOT)) if args.pool_dir.is_relative_to(ROOT) else str(args.pool_dir)),
        "experts": profile.experts,
        "seed": args.seed,
        "split": "eval.splits.split by question id",
        "n_train": len(train),
        "n_test": len(test),
        "embedder": embedder.name,
        "vote": (
            "aggregators.majority with the question's judge (_replay.Ballot), competence = "
            "router.expected_accuracy on the pool scorer's skill weights"
        ),
        "policy_k": POLICY_K,
        "selection_defaults": Selection().model_dump(),
        "adaptive_tuning": tuning,
        "classifier_accuracy": round(classifier_accuracy, 4),
        "policies": policies,
        "ablations": ablation_scores,
        "category_selection_ceilings": ceilings,
        "reference": {
            "majority_all_on_test": policies["all"]["accuracy"],
            "oracle_on_test": round(oracle, 4),
            "published_on_all_questions": PUBLISHED,
        },
        "route_qps_batched": round(qps, 1),
        "route_ms_single": round(ms_single, 1),
        "route_ms_single_fastest": round(ms_fastest, 1),
        "route_batch_size": min(512, len(test)),
    }


def show(result: Mapping) -> None:
    print(
        f"test questions {result['n_test']} (train {result['n_train']}); "
        f"classifier accuracy (held out) {result['classifier_accuracy']:.4f}"
    )
    print(f"{'policy':<26} {'accuracy':>8}  {'95% interval':<18} experts/q")
    rows = {**result["policies"], **result["ablations"]}
    for name, r in rows.items():
        print(f"{name:<26} {r['accuracy']:>8.4f}  {str(list(r['ci95'])):<18} {r['experts_per_question']:.2f}")
    print(f"adaptive tuning: {result['adaptive_tuning']}")
    print(f"reference on test: {result['reference']}")
    print(f"per-category selection ceilings: {result['category_selection_ceilings']}")
    print(
        f"routing: {result['route_qps_batched']} questions/s batched, "
        f"{result['route_ms_single']} ms for one question "
        f"(median; fastest {result['route_ms_single_fastest']}; embedding included)"
    )


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="Shared data (default: the settings').")
    parser.add_argument("--pool-dir", type=Path, default=POOL_DIR, help="The replay pool measured.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the train/test split.")
    parser.add_argument("--train-fraction", type=float, default=0.5, help="Share of question ids in train.")
    parser.add_argument(
        "--max-experts",
        type=float,
        default=4.0,
        help="Tuned adaptive must stay below this many experts per question on average.",
    )
    parser.add_argument("--write", action="store_true", help=f"Write the figures to {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where --write writes.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.pool_dir = args.pool_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="routing-bench-") as workdir:
        result = measure(args, Path(workdir))
    show(result)
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
