"""``coe eval`` at its edges: every ``--out`` problem is one line and writes nothing, a run that
fails before generating leaves nothing behind, a new ``--out`` reuses the generation cache
(``--no-cache`` refuses it), and Ctrl-C stops at once, keeps what finished and says how to
resume (a real process, a real HTTP expert, a real SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import userbench

from eval.results import read_run
from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 20


def coe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    code = done.value.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    spec = userbench.write_benchmark(tmp_path / "bench", QUESTIONS)
    pool = userbench.write_replay_pool(tmp_path / "pool", QUESTIONS)
    return {"spec": spec, "pool": pool, "tmp": tmp_path}


def run_eval(made: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        str(made["spec"]),
        "--pool",
        str(made["pool"]),
        "--aggregator",
        "majority",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", "is a file, not a folder"),
        ("under-file", "is a file, not a folder"),
        ("proc", "--out /proc/"),
    ],
)
def test_every_out_problem_is_one_line_and_writes_nothing(made, capsys, where, message) -> None:
    afile = made["tmp"] / "afile"
    afile.write_text("x")
    out = {"file": afile, "under-file": afile / "run", "proc": Path("/proc/coe-test-run")}[where]
    before = sorted(p.name for p in made["tmp"].iterdir())
    code, err = coe(capsys, *run_eval(made, out))
    assert code == 2 and len(err) == 1 and err[0].startswith("coe: error: ") and message in err[0], err
    assert sorted(p.name for p in made["tmp"].iterdir()) == before and afile.read_text() == "x"


def test_a_failed_run_leaves_nothing_so_the_corrected_command_just_runs(made, capsys) -> None:
    out = made["tmp"] / "out"
    code, err = coe(capsys, *run_eval(made, out, "--policy", "nonsense"))
    assert code == 2 and "nonsense" in err[-1] and not out.exists()
    code, _ = coe(capsys, *run_eval(made, out))
    assert code == 0 and (out / "results.jsonl").is_file()


def test_a_new_out_reuses_the_cache_and_no_cache_refuses_it(made, capsys) -> None:
    first, second, third = (made["tmp"] / name for name in ("one", "two", "three"))
    assert coe(capsys, *run_eval(made, first))[0] == 0
    made_first = read_run(first)
    assert made_first.generations > 0 and made_first.cached == 0
    assert coe(capsys, *run_eval(made, second))[0] == 0
    again = read_run(second)
    assert again.generations == 0 and again.cached == made_first.generations  # nothing generated again
    assert (first / "results.jsonl").read_text() == (second / "results.jsonl").read_text()
    assert coe(capsys, *run_eval(made, third, "--no-cache"))[0] == 0
    assert read_run(third).generations == made_first.generations and read_run(third).cached == 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _served(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_ctrl_c_stops_at_once_keeps_what_finished_and_says_how_to_resume(tmp_path: Path) -> None:
    port, log = _free_port(), tmp_path / "served.jsonl"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "answer_server.py"), str(port), str(log), "0.3"])
    env = {**os.environ, "COE_RUNS_DIR": str(tmp_path / "runs"), "PYTHONUNBUFFERED": "1"}
    try:
        spec = userbench.write_benchmark(tmp_path / "bench", QUESTIONS)
        pool = userbench.write_http_pool(tmp_path / "pool", f"http://127.0.0.1:{port}/v1")
        out = tmp_path / "out"
        argv = [sys.executable, "-m", "orchestrator.cli", "eval", str(spec), "--pool", str(pool)]
        argv += ["--aggregator", "majority", "--whole-split", "--out", str(out)]
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while _served(log) < 6 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert _served(log) >= 6, "the run never got going"
        child.send_signal(signal.SIGINT)
        asked = time.monotonic()
        _, err = child.communicate(timeout=60)
        stopped_s = time.monotonic() - asked
        lines = err.strip().splitlines()
        assert child.returncode == 130, err[-2000:]
        assert stopped_s < 5, f"took {stopped_s:.1f}s to stop"  # the whole run would take ~18 s more
        assert lines[-1].startswith("coe: interrupted: ") and "resume with: " in lines[-1], lines[-3:]
        before = _served(log)
        assert before < QUESTIONS * len(userbench.EXPERTS)
        resume = lines[-1].split("resume with: ", 1)[1]
        assert resume.endswith("--resume") and str(out) in resume
        done = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        info = read_run(out)
        assert info.reused > 0 and info.reused + info.generations == QUESTIONS * len(userbench.EXPERTS)
        served = [json.loads(line) for line in log.read_text().splitlines()]
        in_flight = 2 * len(userbench.EXPERTS)  # each expert's endpoint takes 2 requests at a time
        assert len(served) <= info.reused + info.generations + in_flight
    finally:
        server.terminate()
        server.wait(10)
