"""A real uvicorn server on a loopback port, in a thread of the test process: the service the
tests call with httpx, the SDK's ``Client`` and the ``openai`` client.

Every response the server sends is kept and scanned when the block ends: no error response,
no ``/readyz`` and no job view may hold a server path (the project's folder, the data folder,
the temporary folder the tests write in, the home folder) or a loopback host:port other than the
server's own; no response at all may hold the project's folder or the data folder. A leak fails
the test that provoked it, naming the response."""

from __future__ import annotations

import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.pools.settings import PROJECT_ROOT, load_settings

_ADDRESS = re.compile(r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)")
_PRIVATE = ("/readyz", "/v1/batches")
"""Responses whose every text is the service's own (no model wrote any of it)."""


def server_places() -> list[str]:
    """The server's paths no client may see."""
    home = str(Path.home())
    places = [str(PROJECT_ROOT), str(load_settings().data_dir), str(Path(tempfile.gettempdir())) + "/"]
    return places + ([home] if home not in ("/", "") else [])


class Watched:
    """``app``, with every response's path, status and body kept for ``leaks``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, int, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, body = [0], bytearray()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.seen.append((scope["path"], status[0], body.decode("utf-8", "replace")))

    def leaks(self, own_port: int) -> list[str]:
        """``path status: what leaked`` for each response that shows the server's places."""
        places = server_places()
        found = []
        for path, status, text in self.seen:
            strict = status >= 400 or path.startswith(_PRIVATE)
            looked = places if strict else places[:2]
            shown = [place for place in looked if place in text]
            if strict:
                shown += [m[0] for m in _ADDRESS.finditer(text) if int(m[1]) != own_port]
            if shown:
                found.append(f"{path} {status}: {', '.join(shown)} in {text[:300]!r}")
        return found


@contextmanager
def serving(app: FastAPI, *, start_timeout: float = 120.0) -> Iterator[str]:
    """Run ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``). Fails
    if a response showed a server path, host or port (``Watched.leaks``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    watched = Watched(app)
    server = uvicorn.Server(uvicorn.Config(watched, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting (see the log above)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not start within {start_timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
    leaks = watched.leaks(port)  # reached only when the block ended without an error of its own
    assert not leaks, "responses showed the server's paths, hosts or ports:\n" + "\n".join(leaks)


def wait_ready(url: str, timeout: float = 600.0) -> None:
    """Wait until ``/readyz`` says ready (a service warms its engines, encoder and recordings first)."""
    import httpx

    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/readyz", timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was not ready within {timeout} s")
        time.sleep(0.1)
