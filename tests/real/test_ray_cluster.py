"""The Ray executor on real Ray processes: a two-node cluster on this machine (``tests/ray_cluster.py``)
whose second node dies mid-evaluation, and ``coe eval --executor ray`` interrupted with Ctrl-C.

1. A replay evaluation of a user's benchmark (``userbench``) planned on two devices: the placement
   group spreads them over the two nodes, so the experts' groups run on both. An engine on the
   second node kills that node's raylet after three answers. The evaluation finishes with
   nothing lost: the requests in flight are sent again to actors on the head, every question has
   every expert's answer, and the results are those of a local run.
2. ``coe eval --executor ray`` as a user runs it (Ray started by the run itself), its experts an
   HTTP endpoint that answers slowly, interrupted with SIGINT mid-run: it exits 130 within
   seconds, leaves no Ray process behind, and the run resumes on the local executor.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray_fakes
import userbench
from ray_cluster import MARK, RayCluster, describe, end_marked, free_port, marked

from eval import load_benchmark
from eval.report import write_report
from eval.results import read_results, read_run
from orchestrator import Orchestrator, load_settings
from orchestrator.cli import main
from orchestrator.workflows.evaluate import EvalConfig, evaluate

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = 40


@pytest.fixture
def cluster(monkeypatch):
    ray = ray_fakes.need_ray()
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    made = RayCluster()
    try:
        made.start()
        ray.init(address=made.address, logging_level="WARNING")
        yield made
    finally:
        ray.shutdown()
        made.stop()
    assert describe(marked(made.mark)) == [], "a Ray process of the cluster outlived it"


def arith(tmp_path: Path) -> tuple[Path, Path]:
    spec = userbench.write_benchmark(tmp_path / "bench", QUESTIONS)
    pool = userbench.write_replay_pool(tmp_path / "pool", QUESTIONS)
    with pytest.raises(SystemExit) as done:
        main(["profile", "-b", str(spec), "--pool", str(pool)])
    assert done.value.code == 0
    return spec, pool


def test_a_node_that_dies_mid_evaluation_loses_nothing(cluster, tmp_path, monkeypatch, caplog):
    import ray

    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    spec, pool = arith(tmp_path)
    bench = load_benchmark(str(spec))
    questions = bench.questions(tmp_path, bench.default_split)[QUESTIONS // 2 :]
    config = EvalConfig(
        benchmark=str(spec), split=bench.default_split, pool_dir=str(pool), policy="all", aggregator="majority"
    )
    common = dict(pool=pool, runs_dir=tmp_path / "runs", cache="off", devices=2)
    factory = ray_fakes.KillsItsNode(tmp_path / "cache", seconds=0.3)
    caplog.set_level(logging.INFO, logger="batching")
    on_ray = Orchestrator(load_settings(**common, executor="ray", ray_address=cluster.address), engine_factory=factory)
    there = evaluate(on_ray, bench, questions, config, tmp_path / "there")
    here = evaluate(Orchestrator(load_settings(**common)), bench, questions, config, tmp_path / "here")

    deadline = time.monotonic() + 30
    while all(n["Alive"] for n in ray.nodes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    assert [n["Alive"] for n in nodes.values()].count(False) == 1, "the second node's raylet was never killed"
    placed = re.findall(r"ray: (\S+) loaded on node (\w+)", caplog.text)
    assert {node for _, node in placed} == {n[:12] for n in nodes}, placed  # groups ran on both nodes
    lost = re.findall(r"its Ray actor was lost .*?; (\d+) request\(s\) in flight sent again", caplog.text)
    assert lost and sum(map(int, lost)) > 0
    assert (tmp_path / "there" / "results.jsonl").read_text() == (tmp_path / "here" / "results.jsonl").read_text()
    assert read_run(tmp_path / "there").generations == len(questions) * len(userbench.EXPERTS)
    assert read_run(tmp_path / "there").retried == sum(map(int, lost)) and read_run(tmp_path / "here").retried == 0
    write_report(tmp_path / "there")
    assert "requests sent again after a lost engine or Ray actor" in (tmp_path / "there" / "report.md").read_text()
    assert all(len(r.experts) == 3 and all(e.answer for e in r.experts) for r in read_results(tmp_path / "there"))
    assert there.info.generations == here.info.generations


def served(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_ctrl_c_on_ray_leaves_no_process_and_resumes_here(tmp_path):
    ray_fakes.need_ray()
    port, log = free_port(), tmp_path / "served.jsonl"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "answer_server.py"), str(port), str(log), "0.3"])
    mark = f"ctrl-c-{os.getpid()}"
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs"), "PYTHONUNBUFFERED": "1", MARK: mark}
    env["PYTHONPATH"] = ray_fakes.worker_path()
    try:
        spec = userbench.write_benchmark(tmp_path / "bench", QUESTIONS)
        pool = userbench.write_http_pool(tmp_path / "pool", f"http://127.0.0.1:{port}/v1")
        out = tmp_path / "out"
        argv = [sys.executable, "-m", "orchestrator.cli", "eval", str(spec), "--pool", str(pool)]
        argv += ["--aggregator", "majority", "--whole-split", "--out", str(out)]
        child = subprocess.Popen([*argv, "--executor", "ray"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while served(log) < 6 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert served(log) >= 6, "the run never got going"
        assert len(marked(mark)) > 3  # the driver, Ray's own processes and the experts' actors
        child.send_signal(signal.SIGINT)
        asked = time.monotonic()
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130, err[-2000:]
        assert time.monotonic() - asked < 10
        assert "coe: interrupted: " in err.strip().splitlines()[-1]
        deadline = time.monotonic() + 20
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert describe(marked(mark)) == [], "Ray processes outlived the interrupted run"
        done = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        info = read_run(out)
        assert info.reused > 0 and info.reused + info.generations == QUESTIONS * len(userbench.EXPERTS)
    finally:
        end_marked(mark)
        server.terminate()
        server.wait(10)
