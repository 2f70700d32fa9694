"""The semantic cache (orchestrator/pipeline/semantic.py) on questions of the replay benchmark:
how often it answers a repeat asked another way, how often it answers a question with a number
changed (a false hit), and what a lookup adds to a request.

    questions   a stratified sample of MMLU-Pro test questions (the evaluation half), answered by
                the replay-small pool (six recorded 7B models, policy topk k=3, their majority):
                the answers the cache keeps, with their whole traces
    repeats     each question asked again in paraphrase-like ways, options kept: a polite prefix,
                a request to explain, the whole text in lower case, runs of white space and the
                final punctuation changed, and a few words swapped for synonyms ("Which of the
                following" -> "Which of these", "calculate" -> "compute", ...) where they occur.
                These are rewrites made by rules, not by a model: a hit rate on real users'
                paraphrases would be lower
    changed     each question holding a number, with its first number changed (n -> n + 1): a hit
                is a false hit. Also counted: how many of them the embeddings alone (no facts
                rule) would have answered from the cache at the same threshold
    distinct    each original looked up before it is kept: a hit answers one MMLU-Pro question
                with another's answer (MMLU-Pro holds some near-duplicates)
    latency     one lookup per request, as the service makes it (embedding, the store's bucket,
                decoding and comparing its entries), in ms, p50 and p95, for hits and misses;
                the embedding alone beside it

    python benchmarks/semantic_cache.py [-n 200] [--threshold 0.9] [--store redis://...]
    python benchmarks/semantic_cache.py --write      # and writes results/semantic_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common.query import Query
from eval import get_benchmark, partition, stratified_sample
from orchestrator import Orchestrator, load_settings
from orchestrator.pipeline.semantic import Scope, SemanticCache
from orchestrator.pools.settings import shipped_pool
from orchestrator.stores.semantic import open_semantic_store
from skills import make_embedder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "semantic_cache.json"
SCOPE = Scope("replay-small@1", "topk", 3, "majority")

SYNONYMS = (
    ("Which of the following", "Which of these"),
    ("which of the following", "which of these"),
    ("calculate", "compute"),
    ("Calculate", "Compute"),
    ("Determine", "Find"),
    ("determine", "find"),
    ("approximately", "roughly"),
    ("What is", "What's"),
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\d,.]\d)")


def repeats(text: str) -> dict[str, str]:
    """The paraphrase-like rewrites of one question (see the module), by kind."""
    out = {
        "prefix": f"Please answer the following question. {text}",
        "explain": f"{text}\nExplain your reasoning.",
        "lowercase": text.lower(),
        "spacing": " ".join(text.split()).rstrip("?.") + ("?" if not text.rstrip().endswith("?") else ""),
    }
    swapped = text
    for old, new in SYNONYMS:
        swapped = swapped.replace(old, new)
    if swapped != text:
        out["synonyms"] = swapped
    return out


def changed_number(text: str) -> str | None:
    """The question with its first whole number n written as n + 1; None when it has none."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    return text[: match.start()] + str(int(match.group()) + 1) + text[match.end() :]


def percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "n": 0}
    ms = sorted(s * 1000 for s in seconds)
    return {"p50": round(statistics.median(ms), 2), "p95": round(ms[int(0.95 * (len(ms) - 1))], 2), "n": len(ms)}


def cache_figures(
    n: int = 200, *, threshold: float = 0.9, encoder: str = "all-MiniLM-L6-v2-onnx", store: str | None = None
) -> dict:
    """The figures of the module's docstring, on ``n`` questions; ``store``: a redis:// URL or
    an SQLite file (default: a temporary SQLite file)."""
    bench = get_benchmark("mmlu_pro")
    settings = load_settings()
    sample = stratified_sample(partition(bench.questions(settings.data_dir, "test"))[1], n, 0)
    with tempfile.TemporaryDirectory() as folder:
        coe = Orchestrator(load_settings(pool=shipped_pool("replay-small"), runs_dir=Path(folder), cache="off"))
        answers = coe.answer_batch(sample, benchmark=bench, policy="topk", k=3, aggregation="majority")
        embedder = make_embedder(encoder, cache_dir=settings.encoders_dir)
        kept = open_semantic_store(store or str(Path(folder) / "semantic.sqlite"))
        cache = SemanticCache(embedder, kept, threshold)
        embedder.embed(["warming up"])
        originals = [Query(text=q.text, options=q.options, id=q.id) for q in sample]

        lookup: dict[str, list[float]] = {"hit": [], "miss": []}

        def look(query: Query):
            started = time.perf_counter()
            (one,) = cache.look([query], SCOPE)
            lookup["hit" if one.hit else "miss"].append(time.perf_counter() - started)
            return one

        distinct_hits = 0
        for query, answer in zip(originals, answers, strict=True):
            one = look(query)  # before it is kept: a hit is another question's answer
            distinct_hits += one.hit
            if not answer.error:
                cache.keep([one], [answer])
        answered = [q for q, a in zip(originals, answers, strict=True) if not a.error]

        by_kind: dict[str, list[bool]] = {}
        wrong = 0  # a repeat answered with another question's answer
        own = {a.question_id: a.text for a in answers}
        for query in answered:
            for kind, text in repeats(query.text).items():
                again = look(Query(text=text, options=query.options))
                right = again.answer is not None and again.answer.text == own[query.id]
                wrong += again.answer is not None and not right
                by_kind.setdefault(kind, []).append(right)

        changed = [(q, other) for q in answered if (other := changed_number(q.text)) is not None]
        false_hits = sum(look(Query(text=other, options=q.options)).hit for q, other in changed)
        texts = [q.text for q, _ in changed] + [other for _, other in changed]
        vectors = embedder.embed(texts) if changed else np.zeros((0, 1))
        half = len(changed)
        similar = [float(np.dot(vectors[i], vectors[half + i])) for i in range(half)]
        embedding_alone = sum(s >= threshold for s in similar)

        timed = []
        for query in answered[:100]:
            started = time.perf_counter()
            embedder.embed([query.text])
            timed.append(time.perf_counter() - started)
        kept.close()
    repeats_all = [hit for hits in by_kind.values() for hit in hits]
    return {
        "questions": len(sample),
        "answered": len(answered),
        "threshold": threshold,
        "encoder": encoder,
        "store": "redis" if store and store.startswith("redis") else "sqlite",
        "paraphrase_hit_rate": round(sum(repeats_all) / max(1, len(repeats_all)), 4),
        "paraphrase_repeats": len(repeats_all),
        "paraphrase_hit_rate_by_kind": {k: round(sum(v) / len(v), 4) for k, v in by_kind.items()},
        "paraphrase_wrong_hits": wrong,
        "number_changed_variants": len(changed),
        "number_changed_false_hits": false_hits,
        "number_changed_hits_by_embedding_alone": embedding_alone,
        "number_changed_similarity_median": round(statistics.median(similar), 4) if similar else None,
        "distinct_question_hits": distinct_hits,
        "lookup_ms_miss": percentiles(lookup["miss"]),
        "lookup_ms_hit": percentiles(lookup["hit"]),
        "embedding_ms": percentiles(timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="Questions sampled (stratified by category).")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2-onnx")
    parser.add_argument("--store", default=None, help="A redis:// URL (default: a temporary SQLite file).")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    out = {"benchmark": "semantic_cache", "load_average_start": os.getloadavg()[0]}
    out.update(cache_figures(args.n, threshold=args.threshold, encoder=args.encoder, store=args.store))
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    if args.write:
        RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
