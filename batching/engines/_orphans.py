"""No model process outlives its owner.

vLLM starts its own engine and worker processes; killed parents left them running,
re-parented to PID 1, and they ignored SIGTERM for seconds (RUNTIME.md). So a process that
holds a model makes itself the leader of a new session, which puts everything it starts in
its process group, and a watchdog thread SIGKILLs that whole group as soon as its owner is
gone, whatever killed the owner (SIGKILL included). The owner's pid is polled rather than
relying on the Linux parent-death signal, which fires when the parent *thread* that started
the child ends (engines are loaded from worker threads).

``guard_group`` is called first thing in the vLLM worker child. For a command that is not
Python of ours (an OpenAI-compatible vLLM server), this module wraps it:

    python -m batching.engines._orphans OWNER_PID COMMAND [ARG ...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

__all__ = ["guard_group", "kill_group", "main", "wait_group_gone"]

POLL_S = 0.25


def kill_group() -> None:
    """SIGKILL this process's whole group, this process included."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


def guard_group(owner_pid: int, poll_s: float = POLL_S) -> None:
    """Lead a new process group; kill it when ``owner_pid`` is no longer this process's parent
    or when this process is sent SIGTERM."""
    os.setsid()
    signal.signal(signal.SIGTERM, lambda *_: kill_group())

    def watch() -> None:
        while True:
            if os.getppid() != owner_pid:
                kill_group()
            time.sleep(poll_s)

    threading.Thread(target=watch, name="owner-watchdog", daemon=True).start()


def wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` until no process of group ``pgid`` is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Run COMMAND in a process group that dies with OWNER_PID; exit with COMMAND's status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not args[0].isdigit():
        print("usage: python -m batching.engines._orphans OWNER_PID COMMAND [ARG ...]", file=sys.stderr)
        return 2
    guard_group(int(args[0]))
    child = subprocess.Popen(args[1:])  # noqa: S603 - the owner's own command line
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
