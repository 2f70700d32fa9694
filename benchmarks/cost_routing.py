"""Cost-aware routing on the recorded MMLU-Pro answers: accuracy against cost, per policy.

Two shipped pools, each measured the same way, every step the product's own:

- every expert answers every question once through ``Orchestrator.answer_batch`` (policy
  ``all``; a replay expert's answer does not depend on who else is asked);
- the questions are split in halves by ``eval.splits.split`` (seeded, by question id); a copy
  of the pool is profiled on the first half by ``coe profile``'s code, and each policy is
  calibrated there by ``coe calibrate``'s (``router.calibration.calibrate``: the cascade's
  confidence model, then the knob, to the pool's target);
- everything reported is measured on the other half: the calibrated setting and the whole
  curve of the knob (with the confidence model fitted on the first half), each point played by
  ``router.calibration.play`` (the rules the pipeline runs); the calibrated cascade is also run
  through the SDK in real rounds, and its accuracy, cost and loads are reported beside;
- every answer is right or wrong by the question's judge (``orchestrator.calibrating.verdicts``,
  ``coe calibrate``'s own ``Correct``), and the majority of all experts is ``_replay.majority_all``
  (``aggregators.majority`` with the judge: the routing and aggregation benchmarks' figure).

Pools and targets:
- ``pools/replay-mixed`` (costs in active parameters): reference Llama-3.1-70B alone; target
  at least 95% of its accuracy at no more than 60% of its cost (calibrated as ``--max-cost
  0.6``). The naive cascade (two small models, the 70B one when they disagree) is reported too.
- ``pools/replay-small`` (no costs: one call = 1): target the accuracy of all six experts'
  majority at no more than 2.5 experts per question (``--max-cost 2.5`` against one expert).

Routing speed per encoder (embedding included, no cache) is ``benchmarks/encoders.py``'s: read
from its results, or measured again with ``--encoders``.

    python benchmarks/cost_routing.py            # prints the figures
    python benchmarks/cost_routing.py --write    # and writes benchmarks/results/cost_routing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from _replay import Ballots, ballots, majority_all, replay_pool

from aggregators import wilson_interval
from eval import Question, get_benchmark, split
from orchestrator import Orchestrator, Settings, load_settings
from orchestrator.calibrating import recorded_answers, verdicts
from orchestrator.profiling import profile_pool
from orchestrator.settings import shipped_pool
from router import Router
from router.calibration import KNOBS, Correct, Recorded, Target, calibrate, play, sweep
from router.cascade import leader
from skills import cached_embed, make_embedder

log = logging.getLogger("benchmarks.cost_routing")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cost_routing.json"
ENCODERS = ROOT / "benchmarks" / "results" / "encoders.json"
MIXED = {
    "dir": shipped_pool("replay-mixed"),
    "reference": "meta-llama-3_1-70b-instruct",
    "target": {"max_cost": 0.6},
    "policies": ("cascade", "routellm", "top-p", "adaptive"),
    "goal": "accuracy_ratio >= 0.95 at cost_ratio <= 0.60",
}
SMALL = {
    "dir": shipped_pool("replay-small"),
    "reference": None,  # the best single expert on the calibration half
    "target": {"max_cost": 2.5},
    "policies": ("cascade", "adaptive", "top-p", "topk"),
    "goal": "accuracy >= all-majority at <= 2.5 experts per question",
}


def loads(router: Router, weights: Sequence[Mapping[str, float]], ids: Sequence[str], recorded: Recorded) -> int:
    """Model loads the rounds need: each model once per round it serves."""
    per_round: dict[int, set[str]] = {}
    for decision in router.route_weights(weights, ids):
        outcome = play(router, decision, recorded[str(decision.question_id)])
        per_round.setdefault(1, set()).update(decision.expert_names)
        for index in range(outcome.rounds - 1):
            per_round.setdefault(index + 2, set()).update(decision.later[index].names)
    return sum(len(models) for models in per_round.values())


def oracle_escalation(
    router: Router,
    weights: Sequence[Mapping[str, float]],
    ids: Sequence[str],
    recorded: Recorded,
    correct: Correct,
    ref_cost: float,
) -> dict:
    """The same ladders with a perfect confidence signal: climb exactly when the answer so far is
    wrong and the next rung's is right. The bound on what better confidence could buy."""
    right = cost = 0.0
    for decision in router.route_weights(weights, ids, whole_ladder=True):
        qid = str(decision.question_id)
        answers, competence = recorded[qid], router.competence(decision)
        voters = [answers[e] for e in decision.expert_names]
        cost += sum(router.costs[e] for e in decision.expert_names)
        for rung in decision.later:
            new = [answers[e] for e in rung.names]
            after = new if rung.replaces else voters + new
            if correct(qid, leader(voters, competence)) or not correct(qid, leader(after, competence)):
                break  # climbing would not help
            voters = after
            cost += sum(router.costs[e] for e in rung.names)
        right += correct(qid, leader(voters, competence))
    return {"accuracy": round(right / len(ids), 4), "cost_ratio": round(cost / len(ids) / ref_cost, 4)}


def naive_cascade(
    ids: Sequence[str], recorded: Recorded, book: Ballots, costs: Mapping[str, float], pair, strong
) -> dict:
    """Two small models; the strong one when they disagree (or either is unreadable), by the judge."""
    right = cost = 0.0
    for qid in ids:
        a, b = (recorded[qid][e].choice for e in pair)
        cost += sum(costs[e] for e in pair)
        if book[qid].judge.same(a, b):
            right += book[qid].right(a)
        else:
            cost += costs[strong]
            right += book[qid].right(recorded[qid][strong].choice)
    return {"accuracy": right / len(ids), "cost": cost / len(ids)}


def measure_pool(settings: Settings, spec: dict, workdir: Path, args: argparse.Namespace) -> dict:
    bench = get_benchmark("mmlu_pro")
    every = bench.questions(settings.data_dir)
    if args.limit:
        every = every[: args.limit]
    answering = Orchestrator(settings, pool=replay_pool(settings, workdir / "answers", spec["dir"]))
    started = time.perf_counter()
    recorded = recorded_answers(answering, every, bench)  # coe calibrate's own
    questions = [q for q in every if q.id in recorded]
    correct = verdicts(questions, bench)  # coe calibrate's own: the judge's verdicts
    log.info(
        "%s: %d questions answered by every expert in %.1f s",
        spec["dir"].name,
        len(questions),
        time.perf_counter() - started,
    )
    train, test = split(questions, 0.5, args.seed)
    pool = replay_pool(settings, workdir / "train", spec["dir"])
    profile_pool(Orchestrator(settings, pool=pool), list(train))
    coe = Orchestrator(settings, pool=pool)
    base = coe.router("cascade")
    embedder = make_embedder()
    vectors = cached_embed(embedder, [q.text for q in questions], settings.embeddings_dir)
    row = {q.id: i for i, q in enumerate(questions)}
    scorer = base.scorer

    def weights_of(part: Sequence[Question]) -> list[dict[str, float]]:
        return scorer.weights_from_vectors(vectors[[row[q.id] for q in part]])  # type: ignore[attr-defined]

    train_w, test_w = weights_of(train), weights_of(test)
    train_ids, test_ids = [q.id for q in train], [q.id for q in test]
    costs = pool.costs
    reference = spec["reference"] or max(
        pool.expert_names, key=lambda e: sum(correct(i, recorded[i][e].choice) for i in train_ids)
    )
    target = Target(reference=reference, **spec["target"])
    ref_right = sum(correct(i, recorded[i][reference].choice) for i in test_ids)
    ref_accuracy, ref_cost = ref_right / len(test_ids), costs[reference]
    keys = {qid: {e: heard.choice for e, heard in recorded[qid].items()} for qid in test_ids}
    book = ballots(bench, test, keys, base.profile, test_w)
    everyone = sum(majority_all(book, test_ids)) / len(test_ids)

    def make(policy: str):
        return lambda selection, confidence: Router(
            base.profile,
            scorer,
            policy,
            selection=selection,
            costs=costs,
            confidence=confidence,
            token_experts=base.token_experts,  # none: recordings carry no log-probabilities
        )

    policies = {}
    for policy in spec["policies"]:
        started = time.perf_counter()
        calibration = calibrate(make(policy), policy, train_w, train_ids, recorded, correct, target, strict=False)
        fit_seconds = time.perf_counter() - started
        knob = KNOBS[policy][0]
        curve = sweep(
            lambda sel, p=policy, c=calibration.confidence: make(p)(sel, c),
            policy,
            test_w,
            test_ids,
            recorded,
            correct,
            reference,
            fixed=calibration.achieved.fixed,  # the calibrated ladder's curve
        )
        chosen = next(p for p in curve if p.value == calibration.achieved.value)
        router = make(policy)(calibration.apply(), calibration.confidence)
        right = round(chosen.accuracy * len(test_ids))
        low, high = wilson_interval(right, len(test_ids))
        policies[policy] = {
            "knob": knob,
            "calibrated_value": chosen.value,
            "calibrated": calibration.selection,
            "target_met_on_calibration_half": calibration.met,
            "accuracy": chosen.accuracy,
            "ci95": [round(low, 4), round(high, 4)],
            "accuracy_ratio": chosen.accuracy_ratio,
            "cost_ratio": chosen.cost_ratio,
            "experts_per_question": chosen.experts_per_question,
            "escalated": chosen.escalated,
            "loads": loads(router, test_w, test_ids, recorded),
            "on_calibration_half": calibration.achieved.model_dump(),
            "calibration_seconds": round(fit_seconds, 1),
            "curve": [p.model_dump() for p in curve],
            "calibration_curve": [p.model_dump() for p in calibration.curve],
        }
        log.info(
            "%s %-9s %s=%s acc %.4f (%.3f of ref) cost %.3f experts %.2f",
            spec["dir"].name,
            policy,
            knob,
            chosen.value,
            chosen.accuracy,
            chosen.accuracy_ratio,
            chosen.cost_ratio,
            chosen.experts_per_question,
        )
        if policy == "cascade":
            policies[policy]["oracle_escalation"] = oracle_escalation(
                router, test_w, test_ids, recorded, correct, ref_cost
            )
            pool.artefacts.save_calibration(calibration)
            policies[policy]["sdk_run"] = sdk_cascade(settings, pool, test, correct, ref_cost)
    result = {
        "pool": str(spec["dir"].relative_to(ROOT)),
        "experts": pool.expert_names,
        "costs": costs,
        "cost_unit": pool.cost_unit,
        "n_calibration": len(train),
        "n_test": len(test),
        "reference": reference,
        "reference_accuracy": round(ref_accuracy, 4),
        "reference_cost": ref_cost,
        "goal": spec["goal"],
        "all_majority": {
            "accuracy": round(everyone, 4),
            "accuracy_ratio": round(everyone / ref_accuracy, 4),
            "cost_ratio": round(sum(costs[e] for e in pool.expert_names) / ref_cost, 4),
            "experts_per_question": float(len(pool.expert_names)),
        },
        "policies": policies,
    }
    if spec is MIXED:
        small = sorted((e for e in pool.expert_names if e != reference), key=costs.__getitem__)
        pair = ("phi-3-mini-4k-instruct", "meta-llama-3_1-8b-instruct")
        naive = naive_cascade(
            test_ids, recorded, book, costs, pair if set(pair) <= set(small) else small[:2], reference
        )
        result["naive_cascade"] = {
            "pair": list(pair),
            "accuracy": round(naive["accuracy"], 4),
            "accuracy_ratio": round(naive["accuracy"] / ref_accuracy, 4),
            "cost_ratio": round(naive["cost"] / ref_cost, 4),
        }
    return result


def sdk_cascade(settings: Settings, pool, test: Sequence[Question], correct: Correct, ref_cost: float) -> dict:
    """The calibrated cascade through the SDK: real rounds on the replay engines."""
    coe = Orchestrator(settings.model_copy(update={"cache": "off"}), pool=pool)  # loads are what is measured
    started = time.perf_counter()
    answers = coe.answer_batch(
        list(test), benchmark=get_benchmark("mmlu_pro"), policy="cascade", aggregation="majority"
    )
    seconds = time.perf_counter() - started
    n = len(answers)
    return {
        "accuracy": round(sum(correct(a.question_id, a.choice) for a in answers) / n, 4),
        "cost_ratio": round(sum(a.trace.cost for a in answers) / n / ref_cost, 4),
        "experts_per_question": round(sum(len(a.trace.experts) for a in answers) / n, 3),
        "loads": answers[0].trace.loads,
        "seconds": round(seconds, 1),
    }


def show(result: Mapping) -> None:
    for name, pool in result["pools"].items():
        print(
            f"\n{name}: reference {pool['reference']} accuracy {pool['reference_accuracy']} "
            f"({pool['n_test']} test questions); goal: {pool['goal']}"
        )
        print(f"  all experts' majority: {pool['all_majority']}")
        if "naive_cascade" in pool:
            print(f"  naive cascade: {pool['naive_cascade']}")
        print(
            f"  {'policy':<10} {'knob':<14} {'value':>6} {'accuracy':>8} {'acc/ref':>7} "
            f"{'cost/ref':>8} {'experts':>7} loads"
        )
        for policy, r in pool["policies"].items():
            print(
                f"  {policy:<10} {r['knob']:<14} {r['calibrated_value']:>6} {r['accuracy']:>8.4f} "
                f"{r['accuracy_ratio']:>7.3f} {r['cost_ratio']:>8.3f} {r['experts_per_question']:>7.2f} {r['loads']}"
            )
            if "sdk_run" in r:
                print(f"    through the SDK in rounds: {r['sdk_run']}")
                print(f"    with a perfect confidence signal: {r['oracle_escalation']}")
    for name, r in result.get("encoders", {}).items():
        print(f"encoder {name}: {r}")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="Shared data (default: the settings').")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the halves.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N questions (a quick look).")
    parser.add_argument("--pools", default="mixed,small", help="Which pools: mixed, small.")
    parser.add_argument(
        "--encoders", action="store_true", help="Measure routing speed per encoder again (else: encoders.json's)."
    )
    parser.add_argument("--write", action="store_true", help=f"Write the figures to {RESULTS.relative_to(ROOT)}.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where --write writes.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("batching", "common", "orchestrator", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings(data_dir=args.data_dir)
    result: dict = {
        "benchmark": "mmlu_pro replay",
        "split": "eval.splits.split by question id, halves",
        "seed": args.seed,
        "pools": {},
    }
    with tempfile.TemporaryDirectory(prefix="cost-routing-") as workdir:
        for key in args.pools.split(","):
            spec = {"mixed": MIXED, "small": SMALL}[key.strip()]
            result["pools"][spec["dir"].name] = measure_pool(settings, spec, Path(workdir) / key, args)
    if args.encoders:  # measured again, side by side, in this run
        from encoders import main as measure_encoders

        measured = measure_encoders(["--data-dir", str(settings.data_dir)])
    else:  # as benchmarks/encoders.py measured them on the same halves
        measured = json.loads(ENCODERS.read_text())
    keys = ("route_qps_batched", "route_ms_single", "classifier_accuracy")
    result["encoders"] = {name: {k: r[k] for k in keys} for name, r in measured["encoders"].items()}
    result["encoders_source"] = "measured in this run" if args.encoders else str(ENCODERS.relative_to(ROOT))
    show(result)
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
