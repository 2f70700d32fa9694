"""``coe view``: a local web app onto evaluation runs (``orchestrator.view``), served by uvicorn."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import HostOpt, PortOpt, command_settings, free_to_listen

DEFAULT_PORT = 8765


def view_command(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folders (each holds run.json and results.jsonl), or folders of them "
            "(default: the runs under settings.runs_dir/eval).",
            show_default=False,
        ),
    ] = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
) -> None:
    """Look at evaluation runs in a web browser: each run's accuracy and cost per method, category
    and expert with their intervals, the accuracy-cost chart, a question browser (filters; each
    question's route, experts' answers, votes or aggregator's answer), and two runs compared
    question by question. Everything is served from this machine; nothing is written."""
    import uvicorn

    from common.errors import NotFound
    from orchestrator.view import Catalogue, ViewSettings, create_app

    settings = command_settings()
    if not runs:
        default = settings.runs_dir / "eval"
        if not default.is_dir():
            raise NotFound(
                f"no evaluation runs under {default}: give run folders (coe view RUN_DIR ...) or run coe eval"
            )
        runs = [default]
    view = ViewSettings(runs=tuple(runs), host=host, port=port)
    catalogue = Catalogue.open(view.runs)  # a missing or malformed run is one line, before the port is bound
    free_to_listen(host, port)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    print(f"viewing {len(catalogue.runs)} run(s) on {url} (Ctrl-C stops)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(create_app(view, catalogue), host=host, port=port, log_level="warning"))
    if open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    server.run()


def _open_when_started(server: object, url: str, wait_s: float = 30.0) -> None:
    """Open ``url`` in the user's browser once the server listens (never before: the page would fail)."""
    import webbrowser

    deadline = time.monotonic() + wait_s
    while not getattr(server, "started", False):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    webbrowser.open(url)


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
