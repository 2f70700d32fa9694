"""Building profiles: from recorded answers (replay files) or from live generations.

Both judge each answer by the question's judge (``common.answers.Judge``, through
``Benchmark.check``) and count it under the question's skills. ``skills_of`` says which
skills a question has: by default its dataset label (``question_skills``); a mapping
question id -> skills (e.g. from the LLM annotator) works too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

from common.errors import BadInput
from common.recordings import iter_records, require_models
from common.requests import stated_answer
from eval.benchmarks import Benchmark, Question, get_benchmark
from skills.names import question_skills
from skills.profile import Profile, ProfileBuilder

log = logging.getLogger(__name__)


SkillsOf = Callable[[Question], Sequence[str]] | Mapping[str, Sequence[str]]


def _skills_lookup(skills_of: SkillsOf | None) -> Callable[[Question], Sequence[str]]:
    if skills_of is None:
        return question_skills
    if isinstance(skills_of, Mapping):
        table = skills_of
        return lambda q: table.get(q.id, ())
    return skills_of


def _index(questions: Iterable[Question]) -> dict[str, Question]:
    table: dict[str, Question] = {}
    for question in questions:
        table[question.id] = question
    if not table:
        raise BadInput("no questions given to build a profile from")
    return table


def _expert_map(experts: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    mapping = dict(experts) if isinstance(experts, Mapping) else {e: e for e in experts}
    if not mapping:
        raise BadInput("no experts given to build a profile for")
    return mapping


def build_profile_from_replay(
    replay: Path,
    questions: Iterable[Question],
    experts: Mapping[str, str] | Sequence[str],
    *,
    skills_of: SkillsOf | None = None,
    name: str = "profile",
    prior_strength: float = 4.0,
    benchmark: Benchmark | None = None,
) -> Profile:
    """A profile from recorded answers of ``experts`` (expert name -> recorded model name, or
    names that are the same in both) on ``questions``; records of other questions are skipped.

    Every record is judged again by the question's judge (``Benchmark.check``), on the answer it
    states (its ``pred``, else the answer extracted from its text: ``stated_answer``, the rule
    the replay engine and the pipeline follow), so a profile labels answers as ``coe eval``
    scores them. Records whose own ``correct`` field the judge overrules are counted in the
    profile's ``relabelled``. A recorded model the file does not hold at all is ``NotFound``
    (naming the models it does hold).
    """
    started = time.perf_counter()
    table = _index(questions)
    mapping = _expert_map(experts)
    by_model: dict[str, list[str]] = {}
    for expert, model in mapping.items():
        by_model.setdefault(model, []).append(expert)
    skills = _skills_lookup(skills_of)
    builder = ProfileBuilder(mapping, name=name, source=f"replay:{Path(replay).name}", prior_strength=prior_strength)
    seen = relabelled = 0
    recorded: set[str] = set()
    for record in iter_records(Path(replay)):
        recorded.add(record.model)
        question = table.get(record.question_id)
        if question is None or record.model not in by_model:
            continue
        bench = benchmark or get_benchmark(question.benchmark)
        right = bench.check(question, stated_answer(record.pred, record.text, partial(bench.extract, question)))
        relabelled += record.correct is not None and bool(record.correct) != right
        for expert in by_model[record.model]:
            builder.add(expert, skills(question), right)
        seen += 1
    require_models(Path(replay), mapping, recorded)
    if seen == 0:
        raise BadInput(f"replay file {replay} holds no answers of {', '.join(by_model)} to the given questions")
    log.info(
        "profile %s: %d recorded answers (%d relabelled by the judge), %d experts, %.1f s",
        name,
        seen,
        relabelled,
        len(mapping),
        time.perf_counter() - started,
    )
    return builder.build(relabelled=relabelled)


Verdict = tuple[str, str, bool]
"""(question id, expert, whether its answer was right)."""


def build_profile(
    questions: Iterable[Question],
    experts: Sequence[str],
    verdicts: Iterable[Verdict],
    *,
    skills_of: SkillsOf | None = None,
    name: str = "profile",
    source: str = "live",
    prior_strength: float = 4.0,
) -> Profile:
    """A profile from judged answers (the pipeline's: ``coe profile`` on live experts asks every
    expert every question and judges each answer)."""
    table = _index(questions)
    skills = _skills_lookup(skills_of)
    builder = ProfileBuilder(_expert_map(experts), name=name, source=source, prior_strength=prior_strength)
    for question_id, expert, right in verdicts:
        builder.add(expert, skills(table[question_id]), right)
    return builder.build()
