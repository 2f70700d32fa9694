"""A cascade through the SDK on fake engines: rounds, loads per round, voters, cost, resume.

The pool: two cheap experts and a strong one, with costs and a profile (tiny and small right
half the time, big nine times in ten). The cheap ones agree on questions whose text says
"agree" and split on the others; big always answers (C).
"""

from __future__ import annotations

import pytest

from batching import FakeEngine
from eval.benchmarks import Question
from orchestrator import Orchestrator, load_settings
from orchestrator.artefacts import PoolArtefacts
from router import Heard
from skills import ProfileBuilder

POOL = """
[pool]
name = "rounds"
aggregator = "big"
experts = ["tiny", "small", "big"]
{models}
"""
MODEL = """
[[models]]
name = "{name}"
cost = {{ active_params_b = {cost} }}
memory_mb = 1000
[models.source]
kind = "vllm"
model = "packaged:smollm2-135m-instruct"
"""
COSTS = {"tiny": 1, "small": 2, "big": 10}


def answer(spec, request) -> str:
    if "Several assistants" in request.text:  # the aggregator
        return "Weighing the answers. The answer is (C)."
    if spec.name == "big":
        return "Careful thought. The answer is (C)."
    agree = "agree" in request.text
    letter = "A" if agree or spec.name == "tiny" else "B"
    return f"Quick thought. The answer is ({letter})."


class Engines:
    def __init__(self):
        self.made: dict[str, FakeEngine] = {}

    def __call__(self, spec):
        return self.made.setdefault(spec.name, FakeEngine(spec, answer=answer))

    def asked(self, name: str) -> list[list[str]]:
        """The question ids of each batch the model got."""
        engine = self.made.get(name)
        return [[rid.split("/")[0] for rid in batch] for batch in engine.batches] if engine else []


@pytest.fixture
def settings(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    models = "".join(MODEL.format(name=n, cost=c) for n, c in COSTS.items())
    (pool / "pool.toml").write_text(POOL.format(models=models))
    builder = ProfileBuilder(list(COSTS))
    for expert, right in {"tiny": 50, "small": 50, "big": 90}.items():
        for i in range(100):
            builder.add(expert, ["maths"], i < right)
    PoolArtefacts(pool).save_profile(builder.build())
    return load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=100_000, cache="off")


QUESTIONS = [
    Question(id=f"q{i}", benchmark="free", text=f"{kind} question {i}?", options=tuple("ABCD"), answer="C")
    for i, kind in enumerate(["agree", "split", "agree", "split", "split"])
]


def test_a_cascade_asks_the_strong_expert_only_where_the_cheap_ones_split(settings):
    engines = Engines()
    answers = Orchestrator(settings, engine_factory=engines).answer_batch(
        QUESTIONS, policy="cascade", aggregation="majority"
    )
    by_id = {a.question_id: a for a in answers}
    for qid in ("q0", "q2"):  # the cheap experts agreed: one round, their answer
        trace = by_id[qid].trace
        assert trace.route.expert_names == ["tiny", "small"]
        assert by_id[qid].choice == "A"
        assert [e.escalate for e in trace.escalations] == [False]
        assert trace.cost == COSTS["tiny"] + COSTS["small"]
    for qid in ("q1", "q3", "q4"):  # split: escalated, and big's answer replaces theirs
        trace = by_id[qid].trace
        assert trace.route.expert_names == ["tiny", "small", "big"]
        assert by_id[qid].choice == "C"
        first, last = trace.escalations
        assert first.escalate and first.round == 1 and first.next_confidence > first.confidence
        assert not last.escalate and last.round == 2 and last.next_confidence is None
        assert trace.cost == sum(COSTS.values())
        assert trace.aggregation.inputs == ("big",)
    # each model loaded once per round it serves; round 2 is only the escalated questions
    assert {name: e.loads for name, e in engines.made.items()} == {"tiny": 1, "small": 1, "big": 1}
    assert engines.asked("tiny") == [[q.id for q in QUESTIONS]]
    assert engines.asked("big") == [["q1", "q3", "q4"]]
    assert all(e.logprob is not None for a in answers for e in a.trace.experts)  # the fake gives them when asked


def test_the_aggregator_reads_only_the_voters(settings):
    engines = Engines()
    coe = Orchestrator(settings, engine_factory=engines)
    answers = coe.answer_batch(QUESTIONS, policy="cascade", skip_consensus=False)
    by_id = {a.question_id: a for a in answers}
    assert by_id["q0"].trace.aggregation.inputs == ("tiny", "small")
    assert by_id["q1"].trace.aggregation.inputs == ("big",)
    assert all(a.trace.aggregation.method == "synthesis:big" for a in answers)
    batches = engines.made["big"].batches
    assert batches[0] == [f"{q}/expert/big" for q in ("q1", "q3", "q4")]
    assert batches[1] == [f"{q.id}/aggregate" for q in QUESTIONS]  # one aggregation round, last


def test_voters_that_agree_end_the_cascade_without_the_aggregator(settings):
    engines = Engines()
    answers = Orchestrator(settings, engine_factory=engines).answer_batch(QUESTIONS, policy="cascade")
    agreed = [a for a in answers if a.trace.aggregation.method == "consensus"]
    assert agreed and all(a.trace.aggregation.skipped for a in agreed)
    assert all(len(a.trace.aggregation.inputs) >= 2 for a in agreed)  # a consensus of the voters
    asked = [t for batch in engines.made["big"].batches for t in batch if t.endswith("/aggregate")]
    assert sorted(asked) == sorted(f"{a.question_id}/aggregate" for a in answers if a not in agreed)


def test_a_rerun_with_the_run_id_resumes_every_round(settings):
    first = Orchestrator(settings, engine_factory=Engines()).answer_batch(
        QUESTIONS, policy="cascade", aggregation="majority", run_id="climb"
    )
    engines = Engines()
    again = Orchestrator(settings, engine_factory=engines).answer_batch(
        QUESTIONS, policy="cascade", aggregation="majority", run_id="climb"
    )
    assert [a.choice for a in again] == [a.choice for a in first]
    assert [a.trace.escalations for a in again] == [a.trace.escalations for a in first]
    assert all(not e.batches for e in engines.made.values())  # nothing generated again


def test_plan_predicts_loads_per_round(settings):
    from orchestrator.rounds import predicted_loads

    coe = Orchestrator(settings, engine_factory=Engines())
    pipeline = coe.pipeline("cascade")
    asked = pipeline.ask(QUESTIONS)
    first = pipeline.plan([t for one in asked for t in _first_tasks(one)])
    assert first.predicted_loads == 2  # tiny and small
    assert predicted_loads(first, [one.decision for one in asked]) == 3  # and big, in round 2


def _first_tasks(one):
    from orchestrator.graph import expert_task

    return [expert_task(one.query.id, e, one.prompting.prompt, logprobs=True) for e in one.decision.expert_names]


def test_a_strong_expert_that_fails_leaves_the_cheap_answers_standing(settings):
    """Where the escalated expert gives no answer, the earlier voters' answer stands, as
    ``router.calibration.play`` (and so ``coe eval``) decides it."""
    from router.calibration import play

    def big_fails_on_q1(request):
        return request.question_id == "q1"

    class Failing(Engines):
        def __call__(self, spec):
            fail = big_fails_on_q1 if spec.name == "big" else None
            return self.made.setdefault(spec.name, FakeEngine(spec, answer=answer, fail_on=fail))

    coe = Orchestrator(settings, engine_factory=Failing())
    by_id = {a.question_id: a for a in coe.answer_batch(QUESTIONS, policy="cascade", aggregation="majority")}
    failed = by_id["q1"]
    assert failed.error is None and failed.choice in {"A", "B"}  # the cheap experts' vote, not nothing
    assert [e.expert for e in failed.trace.experts if e.error] == ["big"]
    assert failed.trace.aggregation.inputs == ("tiny", "small")
    assert by_id["q3"].choice == "C"  # big answered there: its answer replaces theirs
    router = coe.router("cascade")
    heard = {e.expert: Heard(e.expert, e.choice if e.ok else None, e.logprob) for e in failed.trace.experts}
    (decision,) = router.route_weights([{}], ["q1"])
    assert play(router, decision, heard).choice == failed.choice


def test_calibration_records_token_logprobs_and_fits_them(settings):
    """``coe calibrate`` asks every expert with log-probabilities (where the engine gives them:
    the fake does), so the fitted confidence model can lean on them."""
    from orchestrator.calibrating import calibrate_pool, recorded_answers

    golds = ["A", "C", "C", "A", "C", "A", "C", "C"]
    kinds = ["agree", "split", "agree", "split", "split", "agree", "split", "agree"]
    questions = [
        Question(id=f"c{i}", benchmark="free", text=f"{kind} calibration {i}?", options=tuple("ABCD"), answer=g)
        for i, (kind, g) in enumerate(zip(kinds, golds, strict=True))
    ]
    coe = Orchestrator(settings, engine_factory=Engines())
    recorded = recorded_answers(coe, questions, None)
    assert all(h.logprob is not None for answers in recorded.values() for h in answers.values())
    report = calibrate_pool(coe, questions, None, "cascade", max_cost=1.0)
    assert report.calibration.confidence is not None and report.calibration.confidence.fitted_on > 0
    assert report.path.parent.name == "policies" and report.questions == len(questions)
