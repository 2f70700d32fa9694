"""What ``coe view``'s browser tests and its benchmark share: a real headless Chromium driven by
Selenium (Debian's ``chromium`` and ``chromium-driver``; never a downloaded browser or driver),
and ``coe view`` started as its own process on a free port.

    with Viewer([run_a, run_b]) as viewer, chrome() as browser:
        browser.get(viewer.url + "#/")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
INSTALL = "sudo apt-get install -y chromium chromium-driver"


def find_browser() -> tuple[Path, Path] | str:
    """(the Chromium binary, its chromedriver), or why they cannot be found. COE_CHROMIUM and
    COE_CHROMEDRIVER name others."""
    browser = os.environ.get("COE_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("COE_CHROMEDRIVER") or next(filter(None, map(shutil.which, DRIVERS)), None)
    if not browser or not driver:
        missing = [name for name, found in (("chromium", browser), ("chromium-driver", driver)) if not found]
        return f"no {' or '.join(missing)} on this machine ({INSTALL})"
    return Path(browser), Path(driver)


@contextlib.contextmanager
def chrome(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium of ``width`` x ``height`` pixels whose console is kept (``console``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if isinstance(found, str):
        raise RuntimeError(found)
    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace to sandbox with
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    try:
        yield driver
    finally:
        driver.quit()


def console(driver: Any, level: str = "SEVERE") -> list[str]:
    """The browser console's messages of ``level`` since the last call (errors, by default)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == level]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Viewer:
    """``coe view RUN ...`` as a child process on a free port, stopped at the end."""

    def __init__(self, runs: Sequence[Path], ready_timeout: float = 60) -> None:
        self.runs = list(runs)
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def __enter__(self) -> Viewer:
        command = [sys.executable, "-m", "orchestrator.cli", "view", *map(str, self.runs), "--port", str(self.port)]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        deadline = self.started_at + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coe view exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}api/runs", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"coe view did not answer within {self.ready_timeout} s")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
