"""The aggregator's fitted skip rule: an agreement level and the agreeing experts' competence,
fitted on answered questions so that accuracy stays within a tolerance of always aggregating
(``aggregators.skip``), stored as a versioned pool artefact, used once activated, and followed
by the pipeline. The unanimous default is tests/test_consensus.py; the rule's figures on the
default pool live are benchmarks/aggregator_skip.py's."""

from __future__ import annotations

import pytest

from aggregators import ExpertAnswer
from aggregators.skip import SkipCase, agreement_of, fit_skip, play, skips
from aggregators.synthesis import consensus
from batching import ExpertSpec, FakeEngine
from common.answers import AnswerKind, Judge
from common.errors import NotFound
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.artefacts import PoolArtefacts
from orchestrator.pools.pool import load_pool
from orchestrator.pools.routing import pool_synthesis
from orchestrator.pools.settings import PROJECT_ROOT
from orchestrator.workflows.calibrate import calibrate_skip

CHOICE = Judge(AnswerKind.LETTER)


def said(*pairs: tuple[str | None, float | None]) -> list[ExpertAnswer]:
    return [ExpertAnswer(expert=f"e{i}", text=f"... {c}", choice=c, competence=p) for i, (c, p) in enumerate(pairs)]


def test_agreement_and_its_competence():
    found = agreement_of(said(("A", 0.8), ("A", 0.6), ("B", 0.9)), CHOICE)
    assert found is not None and found.choice == "A" and found.supporters == (0, 1)
    assert found.share == pytest.approx(2 / 3) and found.competence == pytest.approx(0.7)
    assert agreement_of(said(("A", 0.8), ("B", 0.6)), CHOICE) is None  # nobody agrees
    assert agreement_of(said(("A", None), ("A", None)), CHOICE).competence is None  # type: ignore[union-attr]
    assert skips(found, 0.6, 0.7) and not skips(found, 0.6, 0.71) and not skips(found, 0.75, None)
    assert skips(found, 0.66, None)  # no bar: agreement alone
    unknown = agreement_of(said(("A", None), ("A", None)), CHOICE)
    assert skips(unknown, 1.0, None) and not skips(unknown, 1.0, 0.0)  # unknown competence clears no bar


def test_consensus_with_a_competence_bar():
    ids = ["t0", "t1", "t2"]
    strong, weak = said(("A", 0.8), ("A", 0.7), ("B", 0.2)), said(("A", 0.3), ("A", 0.2), ("B", 0.9))
    why, stands = consensus(strong, ids, 0.6, CHOICE, 0.5)  # type: ignore[misc]
    assert why == "67% agree, competence 0.75: 2 of 3 experts answered A" and stands == "t0"  # the most competent
    assert consensus(weak, ids, 0.6, CHOICE, 0.5) is None  # they agree, but are weak on this skill
    assert consensus(weak, ids, 0.6, CHOICE) is not None  # without a bar they would have skipped


def case(share: int, competence: float, agreed_right: bool, aggregated_right: bool) -> SkipCase:
    """A question three experts answered, ``share`` of them alike."""
    answers = said(*[("A", competence)] * share, *[(letter, competence) for letter in "BCD"[: 3 - share]])
    return SkipCase(agreement_of(answers, CHOICE), agreed_right, aggregated_right)


def test_the_fit_saves_the_most_calls_that_cost_no_accuracy():
    cases = (
        [case(3, 0.8, True, True)] * 40  # strong and unanimous: right either way
        + [case(2, 0.8, True, True)] * 20  # strong majority: right either way
        + [case(2, 0.3, False, True)] * 10  # weak majority: wrong, and the aggregator fixes it
        + [case(1, 0.5, False, False)] * 30  # no agreement
    )
    fitted = fit_skip(cases, tolerance=0.001)
    assert fitted.achieved.accuracy == fitted.accuracy_always == 0.7
    assert fitted.achieved.calls_saved == 0.6  # both strong kinds, never the weak majority
    assert fitted.level is not None and fitted.level <= 0.66 and fitted.bar is not None and 0.3 < fitted.bar <= 0.8
    assert play(cases, 1.0, None).calls_saved == 0.4  # the unanimous default saves less
    loose = fit_skip(cases, tolerance=0.1)  # ten points may go: the weak majority is skipped too
    assert loose.achieved.calls_saved == 0.7 and loose.achieved.accuracy == pytest.approx(0.6)


def test_the_fit_never_skips_when_every_skip_costs_accuracy():
    fitted = fit_skip([case(3, 0.9, False, True)] * 5 + [case(1, 0.5, True, True)] * 5)
    assert fitted.level is None and fitted.bar is None and fitted.achieved.calls_saved == 0.0
    with pytest.raises(Exception, match="no calibration questions"):
        fit_skip([])


# -- stored, activated, followed -----------------------------------------------------------------


@pytest.fixture
def pool_dir(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / "pool.toml").write_text((PROJECT_ROOT / "pools" / "default" / "pool.toml").read_text(), "utf-8")
    return folder


def test_a_fitted_rule_is_a_version_used_once_activated(pool_dir, tmp_path):
    stored = PoolArtefacts(pool_dir)
    cases = [case(2, 0.8, True, True)] * 3 + [case(2, 0.3, False, True)]
    first = stored.add_skip(fit_skip(cases))
    assert first.name == "skip.v1.json" and stored.latest_skip() is None  # not active: the settings' rule
    rule = pool_synthesis(load_pool(pool_dir, tmp_path), 1.0)
    assert (rule.skip_agreement, rule.skip_competence) == (1.0, None)
    stored.add_skip(fit_skip(cases), activate=True)
    fitted = stored.latest_skip()
    assert fitted is not None and fitted.revision == 2 and fitted.bar is not None
    rule = pool_synthesis(load_pool(pool_dir, tmp_path), 1.0)
    assert (rule.skip_agreement, rule.skip_competence) == (fitted.level, fitted.bar)
    assert pool_synthesis(load_pool(pool_dir, tmp_path), None).skip_agreement is None  # --no-skip still never skips
    stored.activate(skip=0)
    assert stored.latest_skip() is None
    with pytest.raises(NotFound, match="has no skip v9"):
        stored.activate(skip=9)


QUESTIONS = [
    Question(id=f"q{i}", benchmark="free", text=f"Pick one, number {i}.", options=("x", "y", "z"), answer="A")
    for i in range(6)
]
SAID = {  # both experts agree on q0-q3 (right on q0-q1, wrong on q2-q3) and disagree on q4-q5
    "smollm2": {"q0": "A", "q1": "A", "q2": "C", "q3": "C", "q4": "A", "q5": "B"},
    "gemma3": {"q0": "A", "q1": "A", "q2": "C", "q3": "C", "q4": "B", "q5": "C"},
}


class Engines:
    def __init__(self) -> None:
        self.aggregated: list[str] = []

    def __call__(self, spec: ExpertSpec, cpus=None) -> FakeEngine:
        def answer(spec: ExpertSpec, request) -> str:
            if "Answer 1:" in request.text:  # the aggregator's prompt: it is always right
                self.aggregated.append(request.question_id)
                return "Having read them, the answer is (A)."
            return f"The answer is ({SAID[spec.name][request.question_id]})."

        return FakeEngine(spec, answer=answer)


def test_calibrate_skip_fits_on_answers_and_the_pipeline_follows(pool_dir, tmp_path):
    settings = load_settings(pool=pool_dir, runs_dir=tmp_path / "runs", policy="all", cache="off")
    engines = Engines()
    report = calibrate_skip(Orchestrator(settings, engine_factory=engines), QUESTIONS, None, activate=True)
    assert sorted(engines.aggregated) == [q.id for q in QUESTIONS]  # always aggregated while fitting
    fitted = report.calibration
    # every agreement is unanimous and of unknown competence (no profile): q2-q3 make any skip cost accuracy
    assert report.questions == 6 and fitted.accuracy_always == 1.0 and fitted.level is None
    assert report.path.name == "skip.v1.json" and report.active
    engines = Engines()
    answers = Orchestrator(settings, engine_factory=engines).answer_batch(QUESTIONS)
    assert all(a.trace.aggregation.skipped is None for a in answers) and len(engines.aggregated) == 6
    PoolArtefacts(pool_dir).activate(skip=0)  # back to the settings' unanimous rule: q0-q3 skip
    engines = Engines()
    answers = Orchestrator(settings, engine_factory=engines).answer_batch(QUESTIONS)
    assert sorted(engines.aggregated) == ["q4", "q5"]
