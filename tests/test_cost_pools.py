"""Cost-aware routing, stored: Calibration records, their versions under a pool's policies/,
the pool's router built from them and from the pool's costs, and costs in pool files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from batching.spec import Cost
from common.errors import ConfigError
from orchestrator.artefacts import PoolArtefacts
from orchestrator.pool import load_pool
from orchestrator.routing import pool_router
from orchestrator.settings import PROJECT_ROOT
from router import ConfidenceModel, LinearModel, Selection
from router.calibration import FORMAT_VERSION, Calibration, Target
from router.cascade import FEATURES
from router.policies import strong_and_weak
from tests.test_cost_routing import POINTS

# -- Calibration records and storage ----------------------------------------------------------------


def calibration(policy="cascade", selection=None, **more):
    return Calibration(
        policy=policy,
        selection=selection if selection is not None else {"cascade_gain": 0.05},
        confidence=ConfidenceModel(now=LinearModel(coef=[0.5] * len(FEATURES), intercept=0.1), fitted_on=12),
        target=Target(max_cost=0.5, reference="big"),
        reference_accuracy=0.8,
        reference_cost=70.0,
        achieved=POINTS[1],
        curve=POINTS,
        questions=20,
        **more,
    )


def test_calibration_round_trip_and_apply():
    c = calibration()
    again = Calibration.model_validate_json(c.model_dump_json())
    assert again == c and again.format_version == FORMAT_VERSION
    base = Selection(k=5, top_p=0.3, cascade_gain=0.4)
    applied = c.apply(base)
    assert applied.cascade_gain == 0.05
    assert applied.model_dump(exclude={"cascade_gain"}) == base.model_dump(exclude={"cascade_gain"})
    assert c.apply().model_dump(exclude={"cascade_gain"}) == Selection().model_dump(exclude={"cascade_gain"})
    k = calibration("topk", {"k": 4.0}).apply(base)
    assert k.k == 4 and isinstance(k.k, int) and k.top_p == 0.3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"selection": {"cascade_gian": 0.1}}, "unknown field"),
        ({"selection": {"cascade_gain": 3.0}}, "cascade_gain"),
        ({"selection": {"k": 0}}, "k"),
        ({"format_version": FORMAT_VERSION + 1}, "not known"),
        ({"questions": 0}, "questions"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_calibration_rejects_bad_records(tmp_path, change, message):
    raw = {**json.loads(calibration().model_dump_json()), **change}
    with pytest.raises(ValidationError, match=message):
        Calibration.model_validate(raw)
    stored = PoolArtefacts(tmp_path)
    path = stored.save_calibration(calibration())
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=message) as err:
        stored.latest_calibration("cascade")
    assert path.name in str(err.value) and "\n" not in str(err.value)


def test_calibrations_are_versioned_under_policies(tmp_path):
    stored = PoolArtefacts(tmp_path)
    assert stored.latest_calibration("cascade") is None
    first = stored.save_calibration(calibration())
    assert first == tmp_path / "policies" / "cascade.v1.json"
    assert json.loads(first.read_text())["revision"] == 1
    second = stored.save_calibration(calibration(selection={"cascade_gain": 0.2}))
    assert second.name == "cascade.v2.json"
    latest = stored.latest_calibration("cascade")
    assert latest.revision == 2 and latest.selection == {"cascade_gain": 0.2}
    assert stored.latest_calibration("top-p") is None
    stored.save_calibration(calibration("top-p", {"top_p": 0.4}))
    assert stored.latest_calibration("top-p").selection == {"top_p": 0.4}
    assert stored.calibration_versions("top-p") == {1: tmp_path / "policies" / "top-p.v1.json"}
    # a file stored under another policy's name is refused
    shutil.copy(second, tmp_path / "policies" / "routellm.v1.json")
    with pytest.raises(ConfigError, match="routellm"):
        stored.latest_calibration("routellm")


# -- the pool's router ------------------------------------------------------------------------------

MIXED = PROJECT_ROOT / "pools" / "replay-mixed"
STRONG = "meta-llama-3_1-70b-instruct"


@pytest.fixture
def mixed_pool(tmp_path):
    """A copy of replay-mixed's pool file and profile (no classifier: no skills, no embedder)."""
    shutil.copy(MIXED / "pool.toml", tmp_path / "pool.toml")
    shutil.copytree(MIXED / "profiles", tmp_path / "profiles")
    return load_pool(tmp_path, Path("/data"))


def test_pool_router_weighs_pool_costs(mixed_pool):
    assert mixed_pool.cost_unit == "active_params_b"
    assert mixed_pool.costs[STRONG] == 70 and mixed_pool.costs["phi-3-mini-4k-instruct"] == 3.8
    r = pool_router(mixed_pool, "cascade", None)
    assert r.costs == mixed_pool.costs and r.selection == Selection() and r.confidence == ConfidenceModel()
    (d,) = r.route_weights([{}], whole_ladder=True)
    assert len(d.experts) == 2 and STRONG not in d.expert_names
    assert [rung.names for rung in d.later] == [(STRONG,)] and d.later[0].replaces
    pair = pool_router(mixed_pool, "routellm", None, calibrated=False)
    assert strong_and_weak(pair._lookup) == (STRONG, "phi-3-mini-4k-instruct")


def test_pool_router_takes_a_stored_calibration(mixed_pool):
    fitted = ConfidenceModel(now=LinearModel(coef=[1.0] * len(FEATURES), intercept=-0.5), fitted_on=40)
    stored = calibration(selection={"cascade_gain": 0.25}).model_copy(update={"confidence": fitted})
    mixed_pool.artefacts.save_calibration(stored)
    r = pool_router(mixed_pool, "cascade", None)
    assert r.selection.cascade_gain == 0.25 and r.confidence == fitted
    assert r.selection.model_dump(exclude={"cascade_gain"}) == Selection().model_dump(exclude={"cascade_gain"})
    plain = pool_router(mixed_pool, "cascade", None, calibrated=False)
    assert plain.selection == Selection() and plain.confidence == ConfidenceModel()
    # another policy's calibration is its own
    mixed_pool.artefacts.save_calibration(calibration("top-p", {"top_p": 0.9}).model_copy(update={"confidence": None}))
    top = pool_router(mixed_pool, "top-p", 2)
    assert top.selection.top_p == 0.9 and top.selection.k == 2 and top.confidence == ConfidenceModel()


# -- costs in pool files ----------------------------------------------------------------------------

POOL = """
[pool]
name = "p"
aggregator = "agg"
experts = ["a", "b"]

[[models]]
name = "agg"
[models.source]
kind = "vllm"
model = "packaged:smollm2-135m-instruct"

[[models]]
name = "a"
{cost_a}
[models.source]
kind = "replay"
path = "r.jsonl"
model = "A"
benchmark = "mmlu_pro"

[[models]]
name = "b"
{cost_b}
[models.source]
kind = "replay"
path = "r.jsonl"
model = "B"
benchmark = "mmlu_pro"
"""


def pool_with(tmp_path, cost_a="", cost_b=""):
    (tmp_path / "pool.toml").write_text(POOL.format(cost_a=cost_a, cost_b=cost_b))
    return load_pool(tmp_path, Path("/data"))


def test_pool_costs(tmp_path):
    plain = pool_with(tmp_path)
    assert plain.costs == {"a": 1.0, "b": 1.0} and plain.cost_unit == "calls"
    priced = pool_with(tmp_path, "cost = { usd_per_mtok = 0.2 }", "cost = { usd_per_mtok = 3 }")
    assert priced.costs == {"a": 0.2, "b": 3.0} and priced.cost_unit == "usd_per_mtok"
    sized = pool_with(tmp_path, "cost = { active_params_b = 8 }", "cost = { active_params_b = 70 }")
    assert sized.costs == {"a": 8.0, "b": 70.0} and sized.cost_unit == "active_params_b"
    # the aggregator is no expert: its cost (or none) does not count
    text = POOL.format(cost_a="cost = { active_params_b = 8 }", cost_b="cost = { active_params_b = 70 }")
    (tmp_path / "pool.toml").write_text(text.replace('name = "agg"', 'name = "agg"\ncost = { usd_per_mtok = 1 }'))
    assert load_pool(tmp_path, Path("/data")).costs == {"a": 8.0, "b": 70.0}


@pytest.mark.parametrize(
    ("cost_a", "cost_b", "message"),
    [
        ("cost = { active_params_b = 8 }", "", "either every expert declares a cost or none does; b declare"),
        ("", "cost = { usd_per_mtok = 1 }", "a declare"),
        ("cost = { active_params_b = 8 }", "cost = { usd_per_mtok = 1 }", "not a mix"),
        ("cost = { active_params_b = 8, usd_per_mtok = 1 }", "cost = { active_params_b = 8 }", "exactly one"),
        ("cost = {}", "cost = { active_params_b = 8 }", "exactly one"),
        ("cost = { active_params_b = -1 }", "cost = { active_params_b = 8 }", "models.1.cost|models\\[1\\].cost"),
    ],
)
def test_bad_pool_costs(tmp_path, cost_a, cost_b, message):
    with pytest.raises(ConfigError, match=message) as err:
        pool_with(tmp_path, cost_a, cost_b)
    assert "pool.toml" in str(err.value) and "\n" not in str(err.value)


def test_cost_record():
    assert Cost(active_params_b=13).per_call == 13 and Cost(active_params_b=13).kind == "active_params_b"
    assert Cost(usd_per_mtok=2.0).of_tokens(500_000) == pytest.approx(1.0)
    assert Cost(active_params_b=13).of_tokens(500_000) == 13
    for bad in ({}, {"active_params_b": 1, "usd_per_mtok": 1}, {"active_params_b": 0}, {"tokens": 3}):
        with pytest.raises(ValidationError):
            Cost(**bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e308])
def test_a_confidence_model_with_unusable_numbers_is_refused_when_read(tmp_path, bad):
    """A stored cascade confidence model whose coefficient is NaN, infinite or absurd would make
    every escalation NaN: it is one ConfigError line when the pool is read, never a traceback later."""
    from router import ConfidenceModel

    raw = json.loads(calibration().model_copy(update={"confidence": ConfidenceModel()}).model_dump_json())
    raw["confidence"]["now"]["coef"][0] = bad
    stored = PoolArtefacts(tmp_path)
    path = stored.save_calibration(calibration())
    path.write_text(json.dumps(raw))  # json writes NaN and Infinity as Python reads them back
    with pytest.raises(ConfigError, match="coef") as err:
        stored.latest_calibration("cascade")
    assert "\n" not in str(err.value)
