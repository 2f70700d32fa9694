"""``coe view`` on the command line: bad folders, a port in use and no runs are one line before any
port is bound; the command started as its own process serves its runs over HTTP and stops on
Ctrl-C."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from _browser import Viewer

from orchestrator.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    from view_runs import write_synthetic

    return write_synthetic(tmp_path / "runs" / "synthetic")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["view", "{tmp}/missing"], "missing does not exist"),
        (["view", "{tmp}/empty"], "no evaluation runs in"),
        (["view", "{run}", "--port", "0"], "Invalid value for '--port'"),
        (["view", "{run}", "--host", "no-such-host.invalid"], "is not an address of this machine"),
        (["view", "{run}", "--port", "{busy}"], "cannot listen on 127.0.0.1:"),
        (["view"], "no evaluation runs under"),
    ],
)
def test_bad_input_is_one_line(args, message, run_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [a.format(tmp=tmp_path, run=run_folder, busy=port) for a in args]
        code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("coe: error: ") and message in err


def test_the_command_serves_its_runs(run_folder):
    """``coe view FOLDER`` (a folder of runs) as its own process: the page, its assets, the API."""
    with Viewer([run_folder.parent]) as viewer, httpx.Client(base_url=viewer.url, timeout=10) as http:
        assert http.get("/api/runs").json()["runs"][0]["id"] == "synthetic"
        page = http.get("/")
        assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
        for asset in ("app.js", "style.css", "dom.js", "chart.js"):
            assert http.get(f"/static/{asset}").status_code == 200
        assert http.get("/api/runs/synthetic/questions", params={"skipped": "true"}).json()["total"] == 1
        assert viewer.proc is not None
    assert viewer.proc.returncode == 130  # stopped by Ctrl-C, as coe says of every command
