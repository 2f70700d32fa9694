"""A two-node Ray cluster on this machine for the real tier: a head (``ray start --head``, two CPUs)
and a second node (``ray start --address ...``, one CPU and the custom resource ``node2``).

Every process of the cluster carries a marker in its environment (``COE_RAY_TEST``): the teardown
ends exactly those processes, by their ids (SIGTERM, then SIGKILL), and ``marked`` tells a test
whether any is left. Ray's own ``ray stop`` would end every Ray of this machine's user. Both
nodes bind 127.0.0.1, run no dashboard, and their workers import this checkout and the tests'
helpers (``ray_fakes.worker_path``). Health checks are tightened (1 s, 3 misses) so a node that
dies is declared dead in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import ray_fakes

MARK = "COE_RAY_TEST"
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked(mark: str) -> list[int]:
    """Ids of this user's processes whose environment holds ``COE_RAY_TEST=mark``."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def end_marked(mark: str, grace_s: float = 10.0) -> None:
    """SIGTERM every marked process, then SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in marked(mark):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(0.2)


def describe(pids: list[int]) -> list[str]:
    """``pid name command`` of each process (for messages)."""
    out = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            continue
        out.append(f"{pid} {name} {command}")
    return out


class RayCluster:
    def __init__(self) -> None:
        self.mark = f"coe-{uuid.uuid4().hex[:12]}"
        self.temp_dir = Path(tempfile.mkdtemp(prefix="coe-ray-", dir="/tmp"))  # short: Ray's sockets live here
        self.env = {
            **os.environ,
            MARK: self.mark,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": ray_fakes.worker_path(),
        }
        self.address = ""

    def start(self) -> None:
        health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
        head = [RAY, "start", "--head", "--port", "0", "--node-ip-address", "127.0.0.1", "--num-cpus", "2"]
        head += ["--include-dashboard", "false", "--dashboard-port", str(free_port()), "--disable-usage-stats"]
        head += ["--ray-client-server-port", str(free_port()), "--temp-dir", str(self.temp_dir)]
        head += ["--system-config", json.dumps(health)]
        self._run(head, self.env)
        self.address = (self.temp_dir / "ray_current_cluster").read_text().strip()
        second = [RAY, "start", "--address", self.address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
        second += ["--resources", json.dumps({"node2": 1}), "--disable-usage-stats"]
        self._run(second, {**self.env, "COE_TEST_NODE": "2"})

    def _run(self, argv: list[str], env: dict[str, str]) -> None:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr[-2000:]}")

    def stop(self) -> None:
        end_marked(self.mark)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
