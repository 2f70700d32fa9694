"""``coe profile``: measure each expert's competence per skill and train the skill classifier.

Experts that answer from recordings (replay) are profiled from their recorded answers, in
seconds; live experts (vLLM, HTTP) answer the questions through the batch planner, each
model loaded once. Both the profile and the classifier are stored, versioned, in the pool.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from batching import ReplaySource
from eval.benchmarks import Question
from orchestrator.sdk import Orchestrator
from router import save_classifier, train_classifier
from skills import build_profile_from_replay, build_profile_live, make_embedder, save_profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileReport:
    profile_path: Path
    classifier_path: Path | None
    questions: int
    source: str


def sample(questions: list[Question], limit: int | None, seed: int) -> list[Question]:
    """A seeded sample of ``limit`` questions (all of them when ``limit`` is None or larger)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    return random.Random(seed).sample(questions, limit)


def profile_pool(
    coe: Orchestrator,
    questions: list[Question],
    *,
    classifier: bool = True,
    embedder: str | None = None,
    max_tokens: int | None = None,
) -> ProfileReport:
    pool = coe.pool
    specs = [pool.spec(name) for name in pool.expert_names]
    replays = {s.source.path for s in specs if isinstance(s.source, ReplaySource)}
    if len(replays) == 1 and all(isinstance(s.source, ReplaySource) for s in specs):
        experts = {s.name: s.source.model for s in specs}
        profile = build_profile_from_replay(next(iter(replays)), questions, experts)
        source = "replay"
    else:
        profile = build_profile_live(questions, [s.name for s in specs], coe.run_tasks, max_tokens=max_tokens)
        source = "live"
    profile_path = save_profile(profile, pool.directory)
    log.info("profile: %s profile of %d experts on %d questions -> %s", source, len(specs), len(questions),
             profile_path)
    classifier_path = None
    labelled = [q for q in questions if q.category]
    if classifier and len({q.category for q in labelled}) >= 2:
        model = train_classifier([q.text for q in labelled], [q.category for q in labelled], make_embedder(embedder))
        classifier_path = save_classifier(model, pool.directory)
    return ProfileReport(profile_path, classifier_path, len(questions), source)
