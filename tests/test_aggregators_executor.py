"""The synthesis Compose callback inside the real planner and executor (FakeEngine models)."""

from __future__ import annotations

import pytest

from aggregators import ExpertAnswer, SynthesisJob, SynthesisOptions, compose, synthesis_outcome
from batching import ExpertSpec, FakeEngine
from batching.executor import Executor
from batching.plan import make_plan
from common.requests import Request
from common.tasks import Task
from eval.extract import letter_extractor

FORMAT = 'End with "The answer is (X)".'
EXPERTS = ("good", "bad", "broken")
GOLD = {"q0": "A", "q1": "C", "q2": "B"}


def spec(name: str) -> ExpertSpec:
    return ExpertSpec(name=name, source={"kind": "vllm", "model": "packaged:x"}, memory_mb=500)


PROMPTS: list[str] = []


def answers(spec: ExpertSpec, request: Request) -> str:
    if spec.name == "agg":
        PROMPTS.append(request.text)
        # a careful aggregator: sides with the answer that shows its work
        picked = "A"
        for block in request.text.split("Answer ")[1:]:
            if "Shown work" in block:
                picked = block.rsplit("(", 1)[1][0]
        return f"After comparing them, The answer is ({picked})."
    gold = GOLD[request.question_id]
    if spec.name == "good":
        return f"<think>long private notes</think>Shown work. The answer is ({gold})."
    return "Hunch. The answer is (D)."


def test_aggregation_phase_runs_last_and_leaves_out_failed_experts():
    PROMPTS.clear()
    tasks, jobs = [], {}
    for qid in GOLD:
        ids = []
        for expert in EXPERTS:
            task_id = f"{qid}/{expert}"
            request = Request.user(task_id, f"{qid}?", question_id=qid)
            tasks.append(Task(id=task_id, model=expert, request=request))
            ids.append(task_id)
        tasks.append(Task(id=f"{qid}/agg", model="agg", after=tuple(ids)))
        jobs[f"{qid}/agg"] = SynthesisJob(f"Question {qid}", FORMAT, question_id=qid)
    specs = {n: spec(n) for n in (*EXPERTS, "agg")}
    composer = compose(jobs, SynthesisOptions(order="random", seed=7))
    made: dict[str, FakeEngine] = {}

    def factory(s: ExpertSpec) -> FakeEngine:
        fail = (lambda r: True) if s.name == "broken" else None
        made[s.name] = FakeEngine(s, answer=answers, fail_on=fail)
        return made[s.name]

    plan = make_plan(tasks, specs, budget_mb=1000)
    result = Executor(factory).run(plan, tasks, specs, composer)

    for qid, gold in GOLD.items():
        generation = result.generations[f"{qid}/agg"]
        assert generation.ok, generation.error
        by_task = {
            tid: ExpertAnswer.from_generation(g, letter_extractor(4))
            for tid, g in result.generations.items()
            if tid.startswith(f"{qid}/")
        }
        outcome = synthesis_outcome(result.composed[f"{qid}/agg"], generation, by_task, letter_extractor(4))
        assert outcome.choice == gold
        assert set(outcome.inputs) == {"good", "bad"}
        assert outcome.agreed_with == ("good",)
        assert outcome.confidence == pytest.approx(0.5)
        assert any("broken" in note for note in outcome.left_out)
    # every aggregation request went to the aggregator in one batch, after the experts
    assert made["agg"].batches == [[f"{q}/agg" for q in GOLD]]
    assert all(not t.endswith("/agg") for t in result.failed)
    # the prompts the aggregator saw: both answers that arrived, think blocks stripped
    assert len(PROMPTS) == 3
    for prompt in PROMPTS:
        assert "Shown work" in prompt and "Hunch" in prompt and "Answer 3" not in prompt
        assert "long private notes" not in prompt
