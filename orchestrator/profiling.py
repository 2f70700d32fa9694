"""``coe profile``: measure each expert's competence per skill and train the skill classifier.

Experts that answer from recordings (replay) are profiled from their recorded answers, in
seconds; live experts (vLLM, HTTP) answer the questions through the pipeline (every expert
asked, each model loaded once). Either way each answer is judged by the question's judge, the
rule ``coe eval`` scores by; a recorded ``correct`` field the judge overrules is counted and
reported. Both the profile and the classifier are stored, versioned, in the pool.

Questions of a single category (a user's own benchmark) make a classifier that gives every
query that category; topics, when there are enough questions, still tell questions apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from batching import ReplaySource
from common.errors import BadInput
from common.recordings import replay_book, require_models
from eval import splits
from eval.benchmarks import Benchmark, Question, get_benchmark
from orchestrator.items import check_questions
from orchestrator.sdk import Orchestrator
from router import train_router
from skills import CachedEmbedder, Verdict, build_profile, build_profile_from_replay, make_embedder

log = logging.getLogger(__name__)

MAX_TOPICS = 20
QUESTIONS_PER_TOPIC = 5
"""Topics are made only when each can hold this many training questions on average."""


@dataclass(frozen=True)
class ProfileReport:
    profile_path: Path
    router_paths: list[Path]
    questions: int
    source: str
    active: bool = False
    """Whether the pool now routes with the new versions."""
    relabelled: int = 0
    """Recorded answers whose own ``correct`` field the judge overruled."""


def sample(questions: list[Question], limit: int | None, seed: int) -> list[Question]:
    """A seeded sample of ``limit`` questions (all of them when ``limit`` is None or larger),
    drawn by ``eval.splits.sample``: keyed by question id, whatever the input order."""
    return splits.sample(questions, limit, seed)


def topic_count(questions: int) -> int | None:
    """How many topics ``questions`` training questions make: up to ``MAX_TOPICS``, at least
    ``QUESTIONS_PER_TOPIC`` questions each; None (no topics) when fewer than two would."""
    count = min(MAX_TOPICS, questions // QUESTIONS_PER_TOPIC)
    return count if count >= 2 else None


def profile_pool(
    coe: Orchestrator,
    questions: list[Question],
    *,
    classifier: bool = True,
    embedder: str | None = None,
    activate: bool = False,
    benchmark: Benchmark | None = None,
) -> ProfileReport:
    """Profile the pool's experts on ``questions``; with ``classifier``, also train the router's
    skill classifier (one category or more) and topics on them, and profile the experts on those
    finer skills too. Embeddings are cached in the settings' ``embeddings_dir``."""
    pool = coe.pool
    check_questions(pool, questions)  # recordings of another benchmark would score its questions
    specs = [pool.spec(name) for name in pool.expert_names]
    recorded: dict[Path, dict[str, str]] = {}  # replay file -> expert -> recorded model
    for spec in specs:
        if isinstance(spec.source, ReplaySource):
            recorded.setdefault(spec.source.path, {})[spec.name] = spec.source.model
    for path, wanted in recorded.items():  # before any work: an expert the file never recorded
        require_models(path, wanted, replay_book(path).models())
    artefacts = None
    if classifier:
        unlabelled = sum(1 for q in questions if not q.category)
        if not questions:
            raise BadInput("no questions to train the skill classifier on")
        if unlabelled:
            raise BadInput(
                f"training the skill classifier needs a category on every question ({unlabelled} of "
                f"{len(questions)} have none); use --no-classifier for unlabelled ones"
            )
        encoder = CachedEmbedder(
            make_embedder(embedder, cache_dir=coe.settings.encoders_dir), coe.settings.embeddings_dir
        )
        artefacts = train_router(questions, encoder, n_topics=topic_count(len(questions)))
    skills_of = artefacts.skills_of if artefacts is not None else None
    if len(recorded) == 1 and all(isinstance(s.source, ReplaySource) for s in specs):
        replay, experts = next(iter(recorded.items()))
        profile = build_profile_from_replay(replay, questions, experts, skills_of=skills_of, benchmark=benchmark)
        source = "replay"
    else:
        profile = build_profile(
            questions, pool.expert_names, live_verdicts(coe, questions, benchmark), skills_of=skills_of
        )
        source = "live"
    stored = pool.artefacts
    before = {
        "profile": max(stored.profile_versions(profile.name), default=None),
        "classifier": max(stored.classifier_versions(), default=None),
        "topics": max(stored.topics_versions(), default=None),
    }
    profile_path = stored.save_profile(profile)
    log.info(
        "profile: %s profile of %d experts on %d questions -> %s", source, len(specs), len(questions), profile_path
    )
    router_paths = stored.save_router(artefacts) if artefacts is not None else []
    first = stored.active() is None and not any(before.values())
    if activate or first:  # a pool's first profile routes at once; later ones when asked
        new = {
            path.parent.name + "/" + path.name.split(".v")[0]: int(path.name.split(".v")[1].split(".")[0])
            for path in [profile_path, *router_paths]
        }
        stored.activate(
            profile=new.get(f"profiles/{profile.name}"),
            classifier=new.get("router/classifier"),
            topics=new.get("router/topics"),
        )
    elif stored.active() is None:  # never pinned: pin what it routed with (0: none), so nothing switches
        stored.activate(
            profile=before["profile"] or 0, classifier=before["classifier"] or 0, topics=before["topics"] or 0
        )
    return ProfileReport(
        profile_path, router_paths, len(questions), source, active=activate or first, relabelled=profile.relabelled
    )


def live_verdicts(coe: Orchestrator, questions: list[Question], benchmark: Benchmark | None) -> list[Verdict]:
    """Every expert's answer to every question through the pipeline, judged; failed generations
    are not counted (all failing is an error naming the first cause)."""
    if not questions:
        raise BadInput("no questions to profile on")
    bench = benchmark or get_benchmark(questions[0].benchmark)
    answers = coe.answer_batch(questions, benchmark=bench, policy="all", aggregation="majority")
    verdicts: list[Verdict] = []
    failed: list[str] = []
    for question, answer in zip(questions, answers, strict=True):
        for expert in answer.trace.experts:
            if expert.ok:
                verdicts.append((question.id, expert.expert, bench.check(question, expert.choice)))
            else:
                failed.append(f"{expert.expert}: {expert.error}")
    if not verdicts:
        raise BadInput(f"profile: all {len(failed)} generations failed; the first because: {failed[0]}")
    if failed:
        log.warning("profile: %d generation(s) failed and were not counted (first: %s)", len(failed), failed[0])
    return verdicts
