"""Building profiles: from recorded answers (replay files) or from live generations.

Both score each answer against the question's gold answer and count it under the
question's skills. ``skills_of`` says which skills a question has: by default its
dataset label (``question_skills``); a mapping question id -> skills (e.g. from the LLM
annotator) works too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from common.errors import BadInput
from common.recordings import iter_records, require_models
from common.requests import Request
from common.tasks import RunTasks, Task
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


def score_answer(
    question: Question, pred: str | None = None, text: str | None = None, *, benchmark: Benchmark | None = None
) -> bool:
    """Is the answer right, by the benchmark's check of its answer kind? Uses ``pred`` when
    given, else extracts it from ``text``. ``benchmark``: the question's (a user's spec
    benchmark must be given; a built-in one is found by name)."""
    bench = benchmark or get_benchmark(question.benchmark)
    if pred is None and text:
        pred = bench.extract(question, text)
    return bench.check(question, None if pred is None else str(pred))


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

    A record's ``correct`` is used when present; otherwise its ``pred`` (or the letter
    extracted from its text) is scored against the question's gold answer. A recorded model
    the file does not hold at all is ``NotFound`` (naming the models it does hold).
    """
    started = time.perf_counter()
    table = _index(questions)
    mapping = _expert_map(experts)
    by_model: dict[str, list[str]] = {}
    for expert, model in mapping.items():
        by_model.setdefault(model, []).append(expert)
    skills = _skills_lookup(skills_of)
    builder = ProfileBuilder(mapping, name=name, source=f"replay:{Path(replay).name}", prior_strength=prior_strength)
    seen = 0
    recorded: set[str] = set()
    for record in iter_records(Path(replay)):
        recorded.add(record.model)
        question = table.get(record.question_id)
        if question is None or record.model not in by_model:
            continue
        if record.correct is not None:
            right = bool(record.correct)
        else:
            right = score_answer(question, record.pred, record.text, benchmark=benchmark)
        for expert in by_model[record.model]:
            builder.add(expert, skills(question), right)
        seen += 1
    require_models(Path(replay), mapping, recorded)
    if seen == 0:
        raise BadInput(f"replay file {replay} holds no answers of {', '.join(by_model)} to the given questions")
    log.info(
        "profile %s: %d recorded answers, %d experts, %.1f s", name, seen, len(mapping), time.perf_counter() - started
    )
    return builder.build()


def profile_tasks(
    questions: Iterable[Question],
    experts: Sequence[str],
    *,
    max_tokens: int | None = None,
    benchmark: Benchmark | None = None,
) -> list[Task]:
    """One task per (expert, question): the benchmark's own prompt, with the question id."""
    tasks = []
    for question in questions:
        prompt = (benchmark or get_benchmark(question.benchmark)).prompt(question)
        for expert in experts:
            task_id = f"profile:{expert}:{question.id}"
            request = Request.user(task_id, prompt, question_id=question.id, max_tokens=max_tokens)
            tasks.append(Task(id=task_id, model=expert, request=request))
    return tasks


def build_profile_live(
    questions: Iterable[Question],
    experts: Sequence[str],
    run: RunTasks,
    *,
    skills_of: SkillsOf | None = None,
    name: str = "profile",
    prior_strength: float = 4.0,
    max_tokens: int | None = None,
    benchmark: Benchmark | None = None,
) -> Profile:
    """A profile from fresh answers: every expert answers every question (through ``run``),
    each answer scored with its benchmark's extractor. Failed generations are not counted."""
    table = _index(questions)
    experts = list(_expert_map(experts))
    skills = _skills_lookup(skills_of)
    tasks = profile_tasks(table.values(), experts, max_tokens=max_tokens, benchmark=benchmark)
    log.info("profile %s: running %d generations", name, len(tasks))
    generations = run(tasks)
    builder = ProfileBuilder(experts, name=name, source="live", prior_strength=prior_strength)
    failed = 0
    cause = ""
    for task in tasks:
        generation = generations.get(task.id)
        if generation is None or not generation.ok:
            failed += 1
            cause = cause or (generation.error if generation is not None else None) or "no generation came back"
            continue
        question = table[task.request.question_id]  # type: ignore[union-attr,index]
        builder.add(task.model, skills(question), score_answer(question, text=generation.text, benchmark=benchmark))
    if failed == len(tasks):
        raise BadInput(f"profile {name}: all {failed} generations failed; the first because: {cause}")
    if failed:
        log.warning(
            "profile %s: %d of %d generations failed and were not counted (first: %s)", name, failed, len(tasks), cause
        )
    return builder.build()
