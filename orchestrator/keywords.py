"""The keyword scorer, as Symbolic-MoE routes: an LLM annotator names the skills a question needs
in a few keywords, and each keyword is mapped to the nearest skill the pool's profile knows."""

from __future__ import annotations

from common.errors import BadInput
from common.tasks import RunTasks
from router import KeywordScorer, annotator_keywords
from router.topics import TOPIC_PREFIX
from skills import SkillMapper
from skills.embed import Embedder
from skills.profile import Profile


def keyword_scorer(profile: Profile, run: RunTasks, annotator: str, embedder: Embedder) -> KeywordScorer:
    """Keywords from ``annotator`` (run through ``run``), mapped onto the profile's named skills."""
    skills = [s for s in profile.skills if not s.startswith(TOPIC_PREFIX)]
    if not skills:
        raise BadInput(
            "the keyword scorer maps keywords onto the skills of the pool's profile, and this "
            "pool's profile has none (build one with 'coe profile')"
        )
    return KeywordScorer(SkillMapper(skills, embedder), annotator_keywords(run, annotator))
