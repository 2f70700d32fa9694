"""Conversations on the recorded MMLU-Pro answers of pools/replay-small's six experts: routing a
follow-up with and without its earlier turns, and expert switches with and without session
affinity; and the semantic cache's figures (``benchmarks/semantic_cache.py``). Each part is one
function returning its figures (``PARTS``).

The conversations are made from the evaluation half of MMLU-Pro's test split (``eval.partition``:
the shipped router was profiled on the other half), a sample stratified by category of questions
of at least two sentences: each sentence is a user turn (the earliest ones joined so that there
are at most four), so the last turn is the question proper ("Which of the following ...?") and the
turns before it hold its subject. A topic change is the same conversation followed by a whole
question of another category.

    routing    replay-small's shipped router (its active profile, classifier and topics), policy
               topk k=3, on the last turn: alone, read in the context of the turns before it
               (``Router.route``'s ``contexts``, for several context weights; the product's is
               ``router.CONTEXT_WEIGHT``), and the whole question as the reference. Figures: how
               often the top named skill is the question's category, and how often the routed
               experts' majority is right (``_replay.Ballot``).
    affinity   every turn routed in context; without affinity each turn takes the experts it is
               routed to, with it a turn keeps its conversation's experts unless the skills moved
               past the threshold (``router.keep_or_move``, for several thresholds; the pool's is
               ``sessions.shift``). Figures per conversation: expert switches (turns whose experts
               differ from the turn before), the share of topic changes that moved, and the routed
               majority's accuracy on the last turn and on the new topic. The pool's threshold is
               also played through the product (``Orchestrator.chat``, engines answering anything:
               generation is not measured here, routing is) on a subset, which must agree.

    python benchmarks/conversations.py [-n 600]   # prints the figures
    python benchmarks/conversations.py --write    # and writes benchmarks/results/conversations.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _replay import POOL_DIR, Ballots, ballots, expert_choices

from aggregators import wilson_interval
from batching import FakeEngine
from eval import Benchmark, Question, get_benchmark, partition, stratified_sample
from orchestrator import Orchestrator, Settings, load_pool, load_settings
from router import CONTEXT_WEIGHT, Anchor, RouteDecision, Router, keep_or_move
from router.policies import category_weights

log = logging.getLogger("benchmarks.conversations")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "conversations.json"
POLICY, K = "topk", 3
CONTEXT_WEIGHTS = (0.25, 0.5, 0.75)
THRESHOLDS = (0.2, 0.3, 0.35, 0.4, 0.5, 0.6)
MAX_TURNS = 4
CHECKED = 40
"""Conversations played through ``Orchestrator.chat`` to check the simulation against the product."""

_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=[A-Z(\"'])")


@dataclass(frozen=True)
class Conversation:
    question: Question
    turns: tuple[str, ...]
    """The user's turns, oldest first; the last is the question proper."""
    change: Question
    """A question of another category: the topic change after the last turn."""


def turns_of(text: str) -> tuple[str, ...] | None:
    """A question's sentences as turns (at most ``MAX_TURNS``, the earliest joined); None when it
    is one sentence, or a turn would be too short to say anything."""
    sentences = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]
    if len(sentences) < 2:
        return None
    if len(sentences) > MAX_TURNS:
        sentences = [" ".join(sentences[: -(MAX_TURNS - 1)]), *sentences[-(MAX_TURNS - 1) :]]
    if min(len(s) for s in sentences) < 12:
        return None
    return tuple(sentences)


def conversations(questions: Sequence[Question]) -> list[Conversation]:
    """A conversation per question that splits into turns, each followed by the next question (in
    the sample's order) of another category."""
    split = [(q, turns_of(q.text)) for q in questions]
    usable = [(q, t) for q, t in split if t is not None]
    out = []
    for i, (question, turns) in enumerate(usable):
        others = (usable[(i + j) % len(usable)][0] for j in range(1, len(usable)))
        change = next(o for o in others if o.category != question.category)
        out.append(Conversation(question, turns, change))
    return out


def top_category(decision: RouteDecision) -> str | None:
    named = category_weights(decision.skills)
    return max(named, key=named.__getitem__) if named else None


def rate(hits: int, n: int) -> dict:
    low, high = wilson_interval(hits, n)
    return {"rate": round(hits / n, 4), "ci95": [round(low, 4), round(high, 4)], "n": n}


# -- the parts ----------------------------------------------------------------------------------


@dataclass
class Setup:
    settings: Settings
    bench: Benchmark
    router: Router
    chats: list[Conversation]
    book: Ballots


def routing_part(setup: Setup) -> dict:
    """Routing the last turn: alone, in context (per context weight), and the whole question."""
    chats, router, book = setup.chats, setup.router, setup.book
    ids = [c.question.id for c in chats]
    last = [c.turns[-1] for c in chats]
    earlier = [c.turns[:-1] for c in chats]
    ways: dict[str, list[RouteDecision]] = {
        "follow_up_alone": router.route(last, ids),
        **{f"in_context_{w}": router.route(last, ids, contexts=earlier, context_weight=w) for w in CONTEXT_WEIGHTS},
        "whole_question": router.route([c.question.text for c in chats], ids),
    }
    out = {}
    for name, decisions in ways.items():
        category = sum(top_category(d) == c.question.category for d, c in zip(decisions, chats, strict=True))
        right = sum(book[c.question.id].majority_right(d.expert_names) for d, c in zip(decisions, chats, strict=True))
        out[name] = {"category": rate(category, len(chats)), "majority_right": rate(right, len(chats))}
    out["product_context_weight"] = CONTEXT_WEIGHT
    return out


def routed(router: Router, turns: Sequence[str]) -> list[RouteDecision]:
    """Each turn's decision, routed in the context of the turns before it, as the pipeline routes it."""
    return [router.route([turn], [f"turn-{i}"], contexts=[tuple(turns[:i])])[0] for i, turn in enumerate(turns)]


def play(
    router: Router, decisions: Sequence[RouteDecision], threshold: float | None
) -> list[tuple[RouteDecision, str]]:
    """The turns' decisions under affinity at ``threshold`` (None: without affinity), each with
    what affinity did ("new", "kept", "moved"; "routed" without it)."""
    if threshold is None:
        return [(decision, "routed") for decision in decisions]
    anchor: Anchor | None = None
    out = []
    for decision in decisions:
        kept, record, anchor = keep_or_move(
            decision, anchor, threshold=threshold, k=K, experts=router.profile.experts, named_by="session"
        )
        out.append((kept, record.outcome))
    return out


def switches(played: Sequence[tuple[RouteDecision, str]]) -> int:
    sets = [frozenset(d.expert_names) for d, _ in played]
    return sum(a != b for a, b in zip(sets, sets[1:], strict=False))


def affinity_part(setup: Setup) -> dict:
    """Expert switches per conversation, topic changes moved, and accuracy, with and without affinity."""
    chats, router, book = setup.chats, setup.router, setup.book
    out: dict[str, dict] = {}
    decisions = [routed(router, [*chat.turns, chat.change.text]) for chat in chats]
    for threshold in (None, *THRESHOLDS):
        same, moved, right_last, right_change = [], 0, 0, 0
        for chat, made in zip(chats, decisions, strict=True):
            played = play(router, made, threshold)
            same.append(switches(played[:-1]))
            moved += played[-1][1] == "moved" or (
                threshold is None and set(played[-1][0].expert_names) != set(played[-2][0].expert_names)
            )
            right_last += book[chat.question.id].majority_right(played[-2][0].expert_names)
            right_change += book[chat.change.id].majority_right(played[-1][0].expert_names)
        n = len(chats)
        out["without_affinity" if threshold is None else f"shift_{threshold}"] = {
            "switches_per_conversation": round(sum(same) / n, 4),
            "conversations_with_a_switch": rate(sum(s > 0 for s in same), n),
            "topic_change_moved": rate(moved, n),
            "last_turn_majority_right": rate(right_last, n),
            "topic_change_majority_right": rate(right_change, n),
        }
    out["pool_shift"] = load_pool(POOL_DIR, setup.settings.data_dir).pool.sessions.shift
    out["product_check"] = product_check(setup, decisions, out["pool_shift"])
    return out


def product_check(setup: Setup, decisions: Sequence[Sequence[RouteDecision]], threshold: float) -> dict:
    """The pool's threshold played through ``Orchestrator.chat`` (its sessions in an SQLite store,
    engines that answer anything) on the first ``CHECKED`` conversations: the experts of every
    turn must be the simulation's."""
    chats = setup.chats[:CHECKED]
    with tempfile.TemporaryDirectory() as runs:
        settings = setup.settings.model_copy(update={"runs_dir": Path(runs), "cache": "off"})
        coe = Orchestrator(settings, engine_factory=lambda spec, cpus=None: FakeEngine(spec, answer=_anything))
        agree, turns, started = 0, 0, time.perf_counter()
        for chat, made in zip(chats, decisions, strict=False):
            simulated = play(setup.router, made, threshold)
            messages: list[dict[str, str]] = []
            for text, (decision, outcome) in zip([*chat.turns, chat.change.text], simulated, strict=True):
                messages.append({"role": "user", "content": text})
                answer = coe.chat(messages, policy=POLICY, k=K, aggregation="majority")
                messages.append({"role": "assistant", "content": answer.text})
                affinity = answer.trace.conversation.affinity if answer.trace.conversation else None
                turns += 1
                agree += (
                    [e.expert for e in answer.trace.experts] == decision.expert_names
                    and affinity is not None
                    and affinity.outcome == outcome
                )
        seconds = time.perf_counter() - started
        coe.close()
    return {"turns": turns, "agree": agree, "seconds_per_turn": round(seconds / turns, 4)}


def _anything(spec, request) -> str:
    return "Final answer: A"


def cache_part(setup: Setup) -> dict:
    """The semantic cache's figures (``benchmarks/semantic_cache.py``'s ``cache_figures``, on its own
    sample of 200 questions): hit rate on repeats, false hits on changed numbers, lookup latency."""
    from semantic_cache import cache_figures

    return cache_figures(200)


PARTS: dict[str, Callable[[Setup], dict]] = {"routing": routing_part, "affinity": affinity_part, "cache": cache_part}


def setup(n: int, seed: int) -> Setup:
    settings = load_settings(pool=POOL_DIR, policy=POLICY, k=K, cache="off")
    bench = get_benchmark("mmlu_pro")
    _, evaluation = partition(bench.questions(settings.data_dir, "test"))
    sample = stratified_sample(evaluation, n, seed)
    with tempfile.TemporaryDirectory() as runs:
        coe = Orchestrator(settings.model_copy(update={"runs_dir": Path(runs)}))
        choices = expert_choices(coe, sample, bench)
        router = coe.router(POLICY, K)
    answered = [q for q in sample if q.id in choices]
    chats = [c for c in conversations(answered) if c.change.id in choices]
    every = [c.question for c in chats] + [c.change for c in chats]
    unique = list({q.id: q for q in every}.values())
    weights = router.scorer.skill_weights([q.text for q in unique])
    book = ballots(bench, unique, choices, router.profile, weights)
    log.info("%d conversations from %d questions", len(chats), len(sample))
    return Setup(settings, bench, router, chats, book)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=600, help="questions sampled (stratified by category)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="*", choices=sorted(PARTS), default=sorted(PARTS))
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    made = setup(args.n, args.seed)
    figures: dict[str, object] = {
        "setup": {
            "pool": "replay-small",
            "policy": f"{POLICY} k={K}",
            "questions_sampled": args.n,
            "conversations": len(made.chats),
            "turns_per_conversation": round(sum(len(c.turns) for c in made.chats) / len(made.chats), 3),
            "seed": args.seed,
        }
    }
    for name in args.parts:
        figures[name] = PARTS[name](made)
        print(json.dumps({name: figures[name]}, indent=1))
    figures["seconds"] = round(time.perf_counter() - started, 1)
    if args.write:
        RESULTS.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
