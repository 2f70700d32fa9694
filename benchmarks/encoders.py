"""Encoder speed against classifier accuracy, on MMLU-Pro's categories.

For each encoder (``skills.make_embedder`` names), with no embedding cache (the encoder's own
speed is the point):

- a skill classifier (``router.train_classifier``, the defaults ``coe profile`` uses) is trained
  on the categories of the train half (``eval.splits.split(questions, 0.5, 0)``) and scored on
  the test half: the share of test questions whose top label is their category;
- ``route_qps_batched``: questions per second of embedding plus classifier on 512 test
  questions in one call (best of 2 runs, after a warm-up; best of 3 rounds, see below);
- ``route_ms_single``: the median milliseconds of one question alone (of 30; best of 3 rounds);
- ``export_seconds``: how long the encoder's one-off export took (0 when it was already made,
  None for an encoder that has none).

    python benchmarks/encoders.py                   # prints the table
    python benchmarks/encoders.py --write           # and writes benchmarks/results/encoders.json
    python benchmarks/encoders.py --train-size 2000 # fewer training questions (quicker)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from eval import get_benchmark, split
from router import train_classifier
from skills import known_encoders, make_embedder, normalise_skill

log = logging.getLogger("benchmarks.encoders")
RESULT = Path(__file__).resolve().parent / "results" / "encoders.json"
BATCH = 512
SINGLES = 30
ROUNDS = 3


def _speed_round(route, texts: Sequence[str]) -> tuple[float, float]:
    """(questions/s of ``route(texts[:BATCH])``, best of 2; median ms of one question, of 30)."""
    batch = list(texts[:BATCH])
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        route(batch)
        runs.append(time.perf_counter() - started)
    singles = []
    for text in batch[:SINGLES]:
        started = time.perf_counter()
        route([text])
        singles.append((time.perf_counter() - started) * 1000)
    return len(batch) / min(runs), float(np.median(singles))


def measure_encoders(
    questions_train: Sequence[str],
    labels_train: Sequence[str],
    questions_test: Sequence[str],
    labels_test: Sequence[str],
    names: Sequence[str],
    *,
    cache_dir: Path | None = None,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, float | None]]:
    """Per encoder name: ``route_qps_batched``, ``route_ms_single``, ``classifier_accuracy``
    and ``export_seconds`` (see the module's docstring). ``cache_dir``: where exports are kept.

    The speeds are measured after every encoder is trained, in ``rounds`` rounds taking each
    encoder in turn (a warm-up first), and the best round of each is kept: on a shared machine
    the others' load then falls on every encoder alike, and the best round shows the cost."""
    results: dict[str, dict[str, float | None]] = {}
    routes = {}
    truth = [normalise_skill(label) for label in labels_test]
    for name in names:
        embedder = make_embedder(name, cache_dir=cache_dir)
        embedder.embed(["warm-up: loads the model, exporting it first when it has to be"])
        started = time.perf_counter()
        train_vectors = embedder.embed(list(questions_train))
        embed_seconds = time.perf_counter() - started
        log.info("%s: %d train questions embedded in %.1f s", name, len(questions_train), embed_seconds)
        classifier = train_classifier(None, labels_train, embedder, vectors=train_vectors)
        labels = classifier.labels
        test_vectors = embedder.embed(list(questions_test))
        predicted = [labels[i] for i in classifier.predict_proba(test_vectors).argmax(axis=1)]
        accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)

        def route(texts: Sequence[str], embedder=embedder, classifier=classifier) -> np.ndarray:
            return classifier.predict_proba(embedder.embed(list(texts)))

        routes[name] = route
        route(list(questions_test[:8]))  # warm-up
        export = getattr(embedder, "export_seconds", None)
        results[name] = {
            "route_qps_batched": 0.0,
            "route_ms_single": float("inf"),
            "classifier_accuracy": round(accuracy, 4),
            "export_seconds": round(export, 2) if export is not None else None,
            "train_embed_qps": round(len(questions_train) / embed_seconds, 1),
        }
        log.info("%s: classifier accuracy %.4f", name, accuracy)
    for round_ in range(rounds):
        for name, route in routes.items():
            qps, single_ms = _speed_round(route, questions_test)
            log.info("round %d, %s: %.1f questions/s batched, %.2f ms one", round_ + 1, name, qps, single_ms)
            best = results[name]
            best["route_qps_batched"] = max(best["route_qps_batched"] or 0.0, round(qps, 1))
            best["route_ms_single"] = min(best["route_ms_single"] or float("inf"), round(single_ms, 2))
    return results


def show(results: Mapping[str, Mapping[str, float | None]]) -> None:
    print(f"{'encoder':<30} {'route q/s (512)':>15} {'ms (1 q)':>9} {'accuracy':>9} {'export s':>9}")
    for name, r in results.items():
        export = "-" if r["export_seconds"] is None else f"{r['export_seconds']:.1f}"
        print(
            f"{name:<30} {r['route_qps_batched']:>15.1f} {r['route_ms_single']:>9.2f} "
            f"{r['classifier_accuracy']:>9.4f} {export:>9}"
        )


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="Default: the settings' data_dir.")
    parser.add_argument("--encoders", nargs="+", default=known_encoders(), help="Encoder names to measure.")
    parser.add_argument("--train-size", type=int, default=None, help="Training questions (default: the whole half).")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Where exports are kept (default: a fresh one).")
    parser.add_argument("--write", action="store_true", help=f"Write {RESULT.relative_to(RESULT.parents[2])}.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from orchestrator import load_settings

    data_dir = args.data_dir or load_settings().data_dir
    questions = get_benchmark("mmlu_pro").questions(data_dir)
    train, test = split(questions, 0.5, 0)
    if args.train_size is not None:
        train = train[: args.train_size]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="coe-encoders-") as fresh:
        results = measure_encoders(
            [q.text for q in train],
            [q.category or "" for q in train],
            [q.text for q in test],
            [q.category or "" for q in test],
            args.encoders,
            cache_dir=args.cache_dir or Path(fresh),
        )
    show(results)
    out = {
        "benchmark": "mmlu_pro",
        "split": "eval.splits.split(questions, 0.5, 0)",
        "n_train": len(train),
        "n_test": len(test),
        "batch": BATCH,
        "singles": SINGLES,
        "speed_rounds": ROUNDS,
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "classifier": "router.train_classifier defaults (calibrated logistic regression), top label == category",
        "encoders": results,
    }
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULT}")
    return out


if __name__ == "__main__":
    main()
