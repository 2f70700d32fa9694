"""The bad-input table (tests/data/bad_input.toml) against the CLI and the SDK: one line
``coe: error: ...`` with exit status 2, or the project's own error, and nothing run."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import common.errors as errors
from batching import FakeEngine
from orchestrator import Orchestrator, load_settings
from orchestrator.settings import PROJECT_ROOT

TABLE = tomllib.loads((Path(__file__).parent / "data" / "bad_input.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bad_pool(tmp_path_factory) -> Path:
    pool = tmp_path_factory.mktemp("bad") / "pool"
    pool.mkdir()
    (pool / "pool.toml").write_text("[pool\nname = 'x'\n", encoding="utf-8")
    return pool


@pytest.fixture(scope="module")
def dead_pool(tmp_path_factory) -> Path:
    """A pool whose one expert is an HTTP endpoint nobody listens on."""
    pool = tmp_path_factory.mktemp("dead") / "pool"
    pool.mkdir()
    model = (
        '[[models]]\nname = "{n}"\n[models.source]\nkind = "http"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'model = "m"\ntimeout_s = 5\nretries = 1\n'
    )
    (pool / "pool.toml").write_text(
        '[pool]\nname = "dead"\naggregator = "b"\nexperts = ["a"]\n' + model.format(n="a") + model.format(n="b"),
        encoding="utf-8",
    )
    return pool


@pytest.fixture(scope="module")
def lost_pool(tmp_path_factory) -> Path:
    """A pool whose one expert's recordings file is not there."""
    pool = tmp_path_factory.mktemp("lost") / "pool"
    pool.mkdir()
    (pool / "pool.toml").write_text(
        '[pool]\nname = "lost"\naggregator = "b"\nexperts = ["a"]\n'
        '[[models]]\nname = "a"\n[models.source]\nkind = "replay"\npath = "gone.jsonl"\nmodel = "m"\n'
        'benchmark = "mmlu_pro"\n'
        '[[models]]\nname = "b"\nmemory_mb = 100\n[models.source]\nkind = "vllm"\nmodel = "packaged:x"\n',
        encoding="utf-8",
    )
    return pool


@pytest.mark.parametrize("case", TABLE["cli"], ids=lambda c: " ".join(c["args"])[:40] or "(none)")
def test_cli(case, bad_pool, dead_pool, lost_pool):
    paths = {"{bad_pool}": bad_pool, "{dead_pool}": dead_pool, "{lost_pool}": lost_pool}
    args = list(case["args"])
    for mark, path in paths.items():
        args = [a.replace(mark, str(path)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    # progress lines may come first; the failure itself is one line, the last, with no warnings
    assert [line for line in lines if line.startswith("coe: error: ")] == lines[-1:], done.stderr[-2000:]
    assert not [line for line in lines if "WARNING" in line or "Traceback" in line], done.stderr[-2000:]
    assert case["message"] in lines[-1]


def test_cli_non_utf8_argument():
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"orchestrator.cli", b"ask", b"\xff\xfe caf\xe9?"],
        capture_output=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "coe: error: question is not valid UTF-8 text"


@pytest.mark.parametrize("case", TABLE["sdk"], ids=lambda c: f"{c['call']}:{c['message'][:30]}")
def test_sdk(case, tmp_path):
    made: list[FakeEngine] = []

    def factory(spec):
        made.append(FakeEngine(spec))
        return made[-1]

    settings = load_settings(
        pool=PROJECT_ROOT / "pools" / "default", runs_dir=tmp_path / "runs", memory_budget_mb=20000
    )
    coe = Orchestrator(settings, engine_factory=factory)
    kwargs = {k: case[k] for k in ("options", "policy", "k", "run_id") if k in case}
    with pytest.raises(getattr(errors, case["error"]), match=case["message"]):
        getattr(coe, case["call"])(case["question"], **kwargs)
    assert not made  # refused before any model was touched
    assert not (tmp_path / "runs").exists()  # and nothing was stored


def test_serve_refuses_a_port_in_use_before_loading_anything():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "serve", "--pool", "pools/replay-small", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"coe: error: cannot listen on 127.0.0.1:{port}: Address already in use"
