"""The placement benchmark's machinery on a small workload: its simulated clock, its lower bound
and its first-seen baseline hold what they claim (the figures themselves live in
benchmarks/results/placement.json, not here)."""

from __future__ import annotations

import random

import placement  # benchmarks/placement.py (benchmarks/ is on the test path)
import pytest
from _placement_setup import cpu_scenario, workload

from batching.spec import ExpertSpec


def test_every_planner_is_at_or_above_the_bound_and_one_device_meets_it():
    scenario = cpu_scenario(60, random.Random(3))
    out = placement.measure(scenario, seed=3, devices=(1, 4))
    one, four = out["results"]
    for planner in placement.PLANNERS:
        assert one[planner]["makespan_s"] == pytest.approx(one["lower_bound_s"], abs=0.2)  # all work, each load once
        assert one[planner]["loads"] == 17
        assert four[planner]["makespan_s"] >= four["lower_bound_s"] - 0.2  # the bound is a bound
    assert four["work"]["makespan_s"] < min(four["groups"]["makespan_s"], four["first_seen"]["makespan_s"])
    gap = four["work_gap_s"]
    assert gap["idle_per_device"] >= -0.2  # makespan = bound + replicas' loads + idle
    assert sum(out["routing_share"].values()) == pytest.approx(1, abs=0.01)
    assert max(out["routing_share"].values()) > 3 * min(out["routing_share"].values())  # skewed routing


def test_first_seen_deals_models_round_robin_with_the_aggregator_last():
    scenario = cpu_scenario(20, random.Random(1))
    work = workload(scenario, random.Random(1))
    plan = placement.first_seen_plan(work.tasks, scenario, 3)
    assert plan.phases[-1].models == (scenario.aggregator,)
    assert [p.device for p in plan.phases] == [i % 3 for i in range(len(plan.phases))]
    first_seen = list(dict.fromkeys(t.model for t in work.tasks if t.model != scenario.aggregator))
    assert [p.models[0] for p in plan.phases[:-1]] == first_seen
    specs = {m: ExpertSpec(name=m, source={"kind": "vllm", "model": "packaged:x"}) for m in scenario.models}
    got = placement.run(plan, scenario, work, specs)  # the executor runs it: every task once, no failure
    assert got["loads"] == len(plan.phases)
