"""Skills from an LLM annotator, and mapping free keywords onto known skills.

The annotator is asked, several times with different seeds, for a few short skill
keywords; a keyword is kept when it recurs in at least ``min_votes`` of the ``samples``
annotations. ``SkillMapper`` maps any keyword to the nearest known skill by embedding.
Generations come from a ``run`` callable the orchestrator supplies (skills never calls an
engine itself).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from common.errors import BadInput
from common.query import Query
from common.requests import Request
from common.tasks import RunTasks, Task
from skills.embed import Embedder
from skills.names import normalise_skill

ANNOTATION_PROMPT = (
    "Which areas of knowledge does a person need to answer the question below? "
    "Reply with one line: {count} short keywords (one to three words each, e.g. "
    '"organic chemistry", "probability", "contract law"), separated by commas. '
    "Do not answer the question.\n\nQuestion:\n{question}"
)
_MAX_KEYWORD_WORDS = 4
_LEAD = re.compile(r"^\s*(?:keywords?|skills?|areas?)\s*:\s*", re.IGNORECASE)


def annotation_prompt(question: Query | str, count: int = 3) -> str:
    text = question.text if isinstance(question, Query) else question
    if not text or not text.strip():
        raise BadInput("cannot annotate an empty question")
    return ANNOTATION_PROMPT.format(count=count, question=text.strip())


def annotation_tasks(
    questions: Sequence[Query],
    annotator: str | Sequence[str],
    *,
    samples: int = 3,
    max_tokens: int = 48,
    temperature: float = 0.7,
) -> list[Task]:
    """``samples`` tasks per question, sample ``i`` drawn with seed ``i`` at ``temperature`` and sent
    to ``annotator[i % len(annotator)]`` (one model, or several to mix annotators)."""
    models = [annotator] if isinstance(annotator, str) else list(annotator)
    if samples < 1:
        raise BadInput(f"samples must be >= 1, got {samples}")
    if not models:
        raise BadInput("annotation needs at least one annotator model")
    tasks = []
    for question in questions:
        prompt = annotation_prompt(question)
        for sample in range(samples):
            task_id = f"annotate:{question.id}:{sample}"
            request = Request.user(
                task_id, prompt, question_id=question.id, max_tokens=max_tokens, temperature=temperature, seed=sample
            )
            tasks.append(Task(id=task_id, model=models[sample % len(models)], request=request))
    return tasks


def parse_keywords(text: str) -> list[str]:
    """Keywords from one annotation: first non-empty line, split on commas/semicolons/bullets,
    normalised, over-long phrases dropped, duplicates removed."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return []
    body = _LEAD.sub("", lines[0]) if len(lines) == 1 or "," in lines[0] else " , ".join(lines)
    parts = re.split(r"[,;\n]|\s-\s|\u2022", _LEAD.sub("", body))
    out: dict[str, None] = {}
    for part in parts:
        part = re.sub(r"^[\s\-*\d.)]+", "", part).strip().strip("\"'.")
        keyword = normalise_skill(part)
        if keyword and len(keyword.split()) <= _MAX_KEYWORD_WORDS:
            out.setdefault(keyword, None)
    return list(out)


def consensus(annotations: Iterable[Sequence[str]], min_votes: int) -> list[str]:
    """Keywords found in at least ``min_votes`` annotations, most frequent first."""
    if min_votes < 1:
        raise BadInput(f"min_votes must be >= 1, got {min_votes}")
    votes: Counter[str] = Counter()
    for keywords in annotations:
        votes.update(dict.fromkeys(keywords, 1))
    return [k for k, n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_votes]


def annotate(
    questions: Sequence[Query],
    run: RunTasks,
    annotator: str | Sequence[str],
    *,
    samples: int = 3,
    min_votes: int = 2,
) -> dict[str, list[str]]:
    """Query id -> consensus keywords, from ``samples`` annotations each (failed ones count as empty)."""
    if min_votes > samples:
        raise BadInput(f"min_votes ({min_votes}) cannot exceed samples ({samples})")
    tasks = annotation_tasks(questions, annotator, samples=samples)
    generations = run(tasks)
    per_question: dict[str, list[list[str]]] = {q.id: [] for q in questions}
    for task in tasks:
        generation = generations.get(task.id)
        keywords = parse_keywords(generation.text) if generation is not None and generation.ok else []
        per_question[task.request.question_id].append(keywords)  # type: ignore[union-attr,index]
    return {qid: consensus(lists, min_votes) for qid, lists in per_question.items()}


class SkillMapper:
    """Maps free keywords to the nearest of a fixed list of known skills (cosine similarity)."""

    def __init__(self, skills: Sequence[str], embedder: Embedder) -> None:
        self.skills = list(dict.fromkeys(normalise_skill(s) for s in skills if normalise_skill(s)))
        if not self.skills:
            raise BadInput("SkillMapper needs at least one known skill")
        self.embedder = embedder
        self._vectors = embedder.embed(self.skills)

    def nearest(self, keywords: Sequence[str]) -> list[tuple[str, float]]:
        """For each keyword, the nearest known skill and its cosine similarity."""
        words = [normalise_skill(k) for k in keywords]
        if not words:
            return []
        exact = {w: self.skills.index(w) for w in words if w in self.skills}
        sims = self.embedder.embed(words) @ self._vectors.T
        out = []
        for row, word in enumerate(words):
            if word in exact:
                out.append((word, 1.0))
            else:
                best = int(np.argmax(sims[row]))
                out.append((self.skills[best], float(sims[row, best])))
        return out

    def weights(self, keywords: Sequence[str], min_similarity: float = 0.0) -> dict[str, float]:
        """A skill distribution from keywords: each keyword votes for its nearest skill with its
        similarity (votes below ``min_similarity`` dropped); normalised to sum 1."""
        votes: dict[str, float] = {}
        for skill, similarity in self.nearest(keywords):
            if similarity >= min_similarity and similarity > 0:
                votes[skill] = votes.get(skill, 0.0) + similarity
        total = sum(votes.values())
        return {s: v / total for s, v in sorted(votes.items(), key=lambda kv: -kv[1])} if total else {}
