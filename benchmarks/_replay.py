"""What the replay benchmarks share: the replay pool, every expert's choices, and the votes and
verdicts their figures are made of.

Every figure on the recorded answers is counted here, once: an expert group's answer is the
project's one vote (``aggregators.majority`` or ``weighted``) with the question's judge
(``Benchmark.judge``), and an answer is right when that judge says so. The routing, aggregation
and cost routing benchmarks report the same measure (the majority of all six experts, say) by
calling the same ``Ballot`` method on the same ballots, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregators import AggregationResult, ExpertAnswer, majority, weighted
from common.answers import Judge
from eval import Benchmark, Question
from orchestrator import Orchestrator, Pool, Settings, load_pool
from orchestrator.settings import shipped_pool
from router import expected_accuracy
from skills.profile import Profile

Choices = dict[str, dict[str, str | None]]
"""Question id -> expert -> the answer it states (None: unreadable)."""

POOL_DIR = shipped_pool("replay-small")


def replay_pool(settings: Settings, directory: Path, pool_dir: Path = POOL_DIR) -> Pool:
    """The replay pool with its artefacts kept in ``directory`` (profiling writes there, not in
    the shipped pool). Its aggregator is the pool's own and never runs here: every answer these
    benchmarks take is a vote."""
    pool = load_pool(pool_dir, settings.data_dir)
    return pool.model_copy(update={"directory": directory})


def expert_choices(coe: Orchestrator, questions: Sequence[Question], bench: Benchmark) -> Choices:
    """Every expert's answer per question, from the SDK's answers with policy ``all`` (votes, no
    aggregator); a question some expert could not answer is left out."""
    experts = set(coe.pool.expert_names)
    out: Choices = {}
    for answer in coe.answer_batch(questions, benchmark=bench, policy="all", aggregation="majority"):
        calls = answer.trace.experts
        complete = {c.expert for c in calls} == experts and all(c.error is None for c in calls)
        if answer.error is None and complete:
            out[answer.question_id] = {c.expert: c.choice for c in calls}
    return out


@dataclass(frozen=True)
class Ballot:
    """One question's expert answers as votes, with the question's judge and gold answer."""

    judge: Judge
    gold: str
    votes: Mapping[str, ExpertAnswer]
    """Expert -> its answer, with its competence on the question (the ties of a vote)."""

    def _of(self, experts: Iterable[str] | None) -> list[ExpertAnswer]:
        """The votes of ``experts`` (all when None), always in the ballot's order."""
        if experts is None:
            return list(self.votes.values())
        chosen = set(experts)
        return [answer for name, answer in self.votes.items() if name in chosen]

    def majority(self, experts: Iterable[str] | None = None) -> AggregationResult:
        """The majority of ``experts`` (all when None): ``aggregators.majority`` with the judge."""
        return majority(self._of(experts), judge=self.judge)

    def weighted(self, experts: Iterable[str] | None = None, *, n_options: int | None = None) -> AggregationResult:
        """The competence-weighted vote of ``experts``: ``aggregators.weighted`` with the judge."""
        return weighted(self._of(experts), n_options=n_options, judge=self.judge)

    def right(self, answer: str | None) -> bool:
        """Is ``answer`` right? The judge's verdict against the gold answer."""
        return self.judge.correct(answer, self.gold)

    def majority_right(self, experts: Iterable[str] | None = None) -> bool:
        """Is the majority of ``experts`` (all when None) right?"""
        return self.right(self.majority(experts).choice)

    def any_right(self, experts: Iterable[str] | None = None) -> bool:
        """Is some expert of ``experts`` (all when None) right? (The oracle.)"""
        return any(self.right(a.choice) for a in self._of(experts))


Ballots = dict[str, Ballot]
"""Question id -> its ballot."""


def ballots(
    bench: Benchmark,
    questions: Sequence[Question],
    choices: Mapping[str, Mapping[str, str | None]],
    profile: Profile,
    weights: Sequence[Mapping[str, float]],
) -> Ballots:
    """Each question's ballot: every expert's answer as a vote, its competence on the question
    being its expected accuracy on the question's skill weights (``router.expected_accuracy``,
    as the pipeline's votes take it), judged by ``bench.judge``."""
    out: Ballots = {}
    for question, skills in zip(questions, weights, strict=True):
        competence = expected_accuracy(profile, skills)
        votes = {e: ExpertAnswer(expert=e, choice=c, competence=competence[e]) for e, c in choices[question.id].items()}
        out[question.id] = Ballot(bench.judge(question), question.answer, votes)
    return out


def majority_all(book: Ballots, ids: Sequence[str]) -> list[bool]:
    """Per question of ``ids``: is the majority of every expert right? The one all-experts
    majority figure every replay benchmark reports."""
    return [book[i].majority_right() for i in ids]
