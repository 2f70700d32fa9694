"""The doors on the Ray executor: ``coe eval --executor ray`` writes exactly the answers and the
report of a local run, resumes a local run and fills a generation store (``--store``) that
answers a local run (and a job started by a local worker is finished by a worker on Ray) without
regenerating anything; the SDK takes ``executor="ray"``; asked for Ray
where it is not installed, every door says in one line how to install it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import ray_fakes
import userbench

from batching import RayExecutor
from common.errors import ConfigError
from eval import load_benchmark
from eval.results import read_run
from orchestrator import Orchestrator, load_settings
from orchestrator.cli import main
from orchestrator.jobs import JobRequest, open_job_store
from orchestrator.jobs.worker import JobWorker
from orchestrator.pools.settings import PROJECT_ROOT, JobSettings

QUESTIONS = 24
TIMED = ("- wall time per stage:", "- started ")


def coe(*argv: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("coe: error: "), err
    return err[0]


def timeless(value: object) -> object:
    """A dumped answer without its clock readings (``seconds``, ``timings``), which differ between
    any two runs."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in ("seconds", "timings")}
    if isinstance(value, list | tuple):
        return [timeless(v) for v in value]
    return value


def untimed(report: Path) -> list[str]:
    return [line for line in report.read_text().splitlines() if not line.startswith(TIMED)]


@pytest.fixture(scope="module")
def ray():
    with ray_fakes.local_ray(cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    """The benchmark and replay pool of ``userbench``, profiled, and a local evaluation of it."""
    tmp = tmp_path_factory.mktemp("raybench")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(tmp / "runs"))
        env.setenv("COE_CACHE_DIR", str(tmp / "cache"))
        spec = userbench.write_benchmark(tmp / "bench", QUESTIONS)
        pool = userbench.write_replay_pool(tmp / "pool", QUESTIONS)
        coe("profile", "-b", str(spec), "--pool", str(pool))
        argv = ["eval", str(spec), "--pool", str(pool), "--aggregator", "majority", "--baselines"]
        coe(*argv, "--no-cache", "--out", str(tmp / "here"))
        yield {"spec": spec, "pool": pool, "tmp": tmp, "argv": argv, "here": tmp / "here"}


GENERATIONS = QUESTIONS // 2 * len(userbench.EXPERTS)


def test_coe_eval_on_ray_writes_what_a_local_run_writes(ray, bench, monkeypatch, tmp_path):
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    there = tmp_path / "there"
    coe(*bench["argv"], "--no-cache", "--out", str(there), "--executor", "ray")
    assert (there / "results.jsonl").read_text() == (bench["here"] / "results.jsonl").read_text()
    assert untimed(there / "report.md") == untimed(bench["here"] / "report.md")
    assert read_run(there).generations == read_run(bench["here"]).generations == GENERATIONS


def test_a_local_evaluation_resumes_on_ray(ray, bench, monkeypatch, tmp_path):
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "resumed"
    shutil.copytree(bench["here"], out)
    coe(*bench["argv"], "--no-cache", "--out", str(out), "--resume", "--executor", "ray")
    resumed = read_run(out)
    assert resumed.generations == 0 and resumed.reused == GENERATIONS and resumed.model_loads == 0
    assert (out / "results.jsonl").read_text() == (bench["here"] / "results.jsonl").read_text()


def test_a_store_filled_on_ray_answers_a_local_run(ray, bench, monkeypatch, tmp_path):
    """``--store`` names the generation store: a run on Ray writes it, a local run reads it."""
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    shared, filled, answered = tmp_path / "shared.sqlite", tmp_path / "filled", tmp_path / "answered"
    coe(*bench["argv"], "--out", str(filled), "--executor", "ray", "--store", str(shared))
    coe(*bench["argv"], "--out", str(answered), "--store", str(shared))
    assert read_run(filled).cached == 0 and read_run(answered).cached == GENERATIONS
    assert (answered / "results.jsonl").read_text() == (bench["here"] / "results.jsonl").read_text()


def test_the_sdk_answers_on_ray_as_here(ray, bench):
    arith = load_benchmark(str(bench["spec"]))
    questions = arith.questions(bench["tmp"], arith.default_split)[:6]
    answers = {}
    for executor in ("local", "ray"):
        coe = Orchestrator.from_pool(bench["pool"], executor=executor, cache="off", runs_dir=bench["tmp"] / executor)
        assert coe.placement.kind == executor
        done = coe.answer_batch(questions, benchmark=arith, policy="all", aggregation="majority")
        answers[executor] = [timeless(a.model_dump()) for a in done]
    assert all(answer["error"] is None for answer in answers["local"])  # type: ignore[index]
    assert answers["ray"] == answers["local"]


def test_a_job_started_here_is_finished_on_ray(ray, tmp_path):
    """A worker stopped after its first step hands the job back; a worker on Ray takes it over and
    generates only the questions the first had not answered."""
    settings = JobSettings(chunk=2, heartbeat_s=0.1, reclaim_s=0.5, poll_s=0.1)
    store = open_job_store(tmp_path / "store.sqlite", reclaim_s=settings.reclaim_s)
    job = store.create(JobRequest(questions=[f"What is {i} + {i}?" for i in range(6)], aggregation="majority"), total=6)
    core = dict(pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=20_000)
    first: JobWorker

    class Stopping:
        def __call__(self, spec, cpus=None):
            first.stopping.set()  # SIGTERM arrives during the first step
            return ray_fakes.four(spec)

    here = Orchestrator(load_settings(**core, policy="all"), engine_factory=Stopping())
    first = JobWorker(here, store, settings, label="here")
    assert first.run_one() == "released"
    loaded: list[int] = []
    there = Orchestrator(
        load_settings(**core, policy="all", executor="ray"),
        engine_factory=ray_fakes.four,
        progress=lambda e: loaded.append(e.total) if e.kind == "model_loaded" else None,
    )
    assert JobWorker(there, store, settings, label="there").run_one() == "done"
    assert sum(loaded) == 4 * 2  # two experts on the four questions left
    results = store.results(job.id)
    assert len(results.results) == 6 and all(r.methods["ours"].final == "4" for r in results.results)


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed


def test_without_ray_every_door_says_how_to_install_it(no_ray, bench, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    install = "pip install 'symbolic-coe[ray]'"
    argv = ["eval", str(bench["spec"]), "--pool", str(bench["pool"]), "--aggregator", "majority"]
    line = one_line_error(capsys, *argv, "--executor", "ray", "--out", str(tmp_path / "out"))
    assert "executor 'ray' needs Ray, which is not installed" in line and install in line
    assert not (tmp_path / "out").exists()
    line = one_line_error(capsys, "worker", "--store", str(tmp_path / "jobs.sqlite"), "--executor", "ray")
    assert install in line
    with pytest.raises(ConfigError, match=r"pip install 'symbolic-coe\[ray\]'"):
        Orchestrator.from_pool(bench["pool"], executor="ray")
    monkeypatch.setenv("COE_EXECUTOR", "ray")
    with pytest.raises(ConfigError, match=r"executor \(from COE_EXECUTOR\).*pip install"):
        load_settings()
    with pytest.raises(ConfigError, match=r"the Ray executor needs Ray.*pip install 'symbolic-coe\[ray\]'"):
        RayExecutor(ray_fakes.fake)


def test_a_ray_address_without_the_ray_executor_is_one_line(bench, capsys, tmp_path):
    argv = ["eval", str(bench["spec"]), "--pool", str(bench["pool"]), "--out", str(tmp_path / "out")]
    line = one_line_error(capsys, *argv, "--ray-address", "auto")
    assert "ray_address is 'auto' but executor is 'local': set executor ray" in line
    assert "--executor" in one_line_error(capsys, *argv, "--executor", "slurm")
