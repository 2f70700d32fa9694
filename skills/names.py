"""What a skill is: a short normalised phrase ("organic chemistry", "mathematics").

Skills come from a dataset's own labels (``question_skills``) or from an annotator's
keywords (skills.annotate); both go through ``normalise_skill`` so they meet on one spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from eval.benchmarks import Question

# One spelling for names that datasets and annotators write differently.
SYNONYMS: dict[str, str] = {
    "math": "mathematics",
    "maths": "mathematics",
    "cs": "computer science",
    "comp sci": "computer science",
    "econ": "economics",
    "bio": "biology",
    "chem": "chemistry",
    "med": "medicine",
    "stats": "statistics",
    "statistic": "statistics",
    "physic": "physics",
    "mathematic": "mathematics",
    "economic": "economics",
}

# Words whose final "s" is not a plural.
_KEEP_S = ("ss", "us", "is", "ics", "ous", "sis", "xis", "as", "os")
_INVARIANT = frozenset(
    {"series", "species", "news", "means", "diabetes", "rabies", "herpes", "measles", "mumps", "arms"}
)
_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"[^a-z0-9&+#' ]+")


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(_KEEP_S) or word in _INVARIANT:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def normalise_skill(text: str) -> str:
    """Lowercase, drop parentheticals and punctuation, singularise each word, map synonyms.

    >>> normalise_skill("  Organic_Chemistry (advanced) ")
    'organic chemistry'
    >>> normalise_skill("Differential Equations")
    'differential equation'
    """
    text = re.sub(r"\([^)]*\)", " ", text.lower()).replace("&", " and ")
    text = _PUNCT.sub(" ", text.replace("_", " ").replace("-", " ").replace("/", " "))
    words = [_singular(w) for w in _SPACES.split(text.strip()) if w]
    skill = " ".join(words)
    return SYNONYMS.get(skill, skill)


def unique_skills(skills: Iterable[str]) -> list[str]:
    """Normalised, empty ones dropped, first occurrence kept, order kept."""
    seen: dict[str, None] = {}
    for skill in skills:
        name = normalise_skill(skill)
        if name:
            seen.setdefault(name, None)
    return list(seen)


def question_skills(question: Question) -> list[str]:
    """The skills a dataset's own label gives a question (MMLU-Pro category, MedMCQA subject,
    GPQA subdomain; AIME is labelled "mathematics" by its loader)."""
    if not question.category:
        return []
    return unique_skills([question.category])
