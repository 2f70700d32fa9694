"""Skills and profiles: what a question needs, and how good each expert is at it.

    from skills import build_profile_from_replay
    profile = build_profile_from_replay(replay_file, questions, {"llama": "Meta-Llama-3_1-8B-Instruct"})
    profile.accuracy("llama", "law"); profile.score("llama", "law"); profile.competence("llama")

A ``Profile`` is a pydantic model (``model_dump_json`` / ``model_validate``); where it is stored
in a pool is the orchestrator's business (``orchestrator.pools.artefacts.PoolArtefacts``).

Generations (live profiling, LLM annotation) come from a ``run(tasks) -> {task id: Generation}``
callable the orchestrator supplies; this package never calls an engine.
"""

from skills.annotate import (
    SkillMapper,
    annotate,
    annotation_prompt,
    annotation_tasks,
    consensus,
    parse_keywords,
)
from skills.build import Verdict, build_profile, build_profile_from_replay
from skills.embed import Embedder, HashingEmbedder, SentenceEmbedder, known_encoders, make_embedder
from skills.embed_cache import CachedEmbedder, cached_embed
from skills.encoders import OnnxEmbedder
from skills.names import normalise_skill, question_skills, unique_skills
from skills.profile import Profile, ProfileBuilder, SkillStats

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "OnnxEmbedder",
    "Profile",
    "ProfileBuilder",
    "SentenceEmbedder",
    "SkillMapper",
    "SkillStats",
    "Verdict",
    "annotate",
    "annotation_prompt",
    "annotation_tasks",
    "build_profile",
    "build_profile_from_replay",
    "cached_embed",
    "consensus",
    "known_encoders",
    "make_embedder",
    "normalise_skill",
    "parse_keywords",
    "question_skills",
    "unique_skills",
]
