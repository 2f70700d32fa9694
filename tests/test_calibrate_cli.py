"""``coe calibrate`` as a user runs it, on a copy of the shipped replay-mixed pool: the target is
met on the calibration questions, the calibration is stored as a new version, and the pool's
router routes with it once it is activated (``--activate`` or ``coe activate --policy``); a
calibration not activated changes nothing. Bad input is in tests/data/bad_input.toml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from orchestrator import load_pool
from orchestrator.pools.routing import pool_router
from orchestrator.pools.settings import PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"


def coe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600
    )


def test_calibrate_stores_a_version_the_router_reads(tmp_path: Path) -> None:
    pool = tmp_path / "mixed"
    shutil.copytree(PROJECT_ROOT / "pools" / "replay-mixed", pool)
    before = sorted(p.name for p in (pool / "policies").glob("cascade.v*.json"))
    shipped = pool_router(load_pool(pool, DATA), "cascade", None).selection
    done = coe("calibrate", "--pool", str(pool), "--max-cost", "0.8", "-n", "400", "--json", "--activate")
    assert done.returncode == 0, done.stderr[-2000:]
    stored = json.loads(done.stdout)
    assert stored["active"] and stored["selection"]["cascade_gain"] != shipped.cascade_gain
    assert stored["policy"] == "cascade" and stored["target"]["max_cost"] == 0.8
    assert stored["achieved"]["cost_ratio"] <= 0.8 and stored["met"]
    assert stored["confidence"]["fitted_on"] > 0  # the cascade's confidence model was fitted
    after = sorted(p.name for p in (pool / "policies").glob("cascade.v*.json"))
    assert len(after) == len(before) + 1 and Path(stored["path"]).name == after[-1]
    router = pool_router(load_pool(pool, DATA), "cascade", None)
    assert router.selection.cascade_gain == stored["selection"]["cascade_gain"]
    assert router.confidence.model_dump(mode="json") == stored["confidence"]
    # uncalibrated, the router falls back to the constants in Selection
    plain = pool_router(load_pool(pool, DATA), "cascade", None, calibrated=False)
    assert plain.confidence.fitted_on == 0
    # roll back to the shipped version, then to none (uncalibrated), by name
    version = int(Path(stored["path"]).name.split(".v")[1].split(".")[0])
    assert coe("activate", "--pool", str(pool), "--policy", f"cascade={version - 1}").returncode == 0
    assert pool_router(load_pool(pool, DATA), "cascade", None).selection == shipped
    assert coe("activate", "--pool", str(pool), "--policy", "cascade=0").returncode == 0
    assert pool_router(load_pool(pool, DATA), "cascade", None).confidence.fitted_on == 0
    listed = coe("activate", "--pool", str(pool))
    shipped_versions = ", ".join(f"v{v}" for v in range(1, version + 1))
    assert f"policy cascade: {shipped_versions}" in listed.stdout and "'policies': {'cascade': 0}" in listed.stdout
    wrong = coe("activate", "--pool", str(pool), "--policy", "cascade=9")
    assert wrong.returncode == 2 and f"no calibration v9 of cascade (it has: {shipped_versions})" in wrong.stderr


def test_calibrate_to_an_accuracy_floor_prints_the_curve(tmp_path: Path) -> None:
    pool = tmp_path / "mixed"
    shutil.copytree(PROJECT_ROOT / "pools" / "replay-mixed", pool)
    routed = pool_router(load_pool(pool, DATA), "routellm", None).selection
    done = coe("calibrate", "--pool", str(pool), "--policy", "routellm", "--min-accuracy", "0.9", "-n", "300")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "routellm: win_threshold = " in done.stdout and "<- chosen" in done.stdout
    assert "not active: route with it by 'coe activate --policy routellm=1'" in done.stdout
    assert (pool / "policies" / "routellm.v1.json").is_file()
    assert pool_router(load_pool(pool, DATA), "routellm", None).selection == routed  # nothing switched


def test_route_shows_a_cascades_ladder() -> None:
    done = coe("route", "--pool", "pools/replay-mixed", "--policy", "cascade", "What is the derivative of x^3?")
    assert done.returncode == 0, done.stderr[-2000:]
    first, _, later = done.stdout.partition("round 2, only if the answers so far look unsure (replaces")
    assert later and "meta-llama-3_1-70b-instruct" in later and "meta-llama-3_1-70b-instruct" not in first
