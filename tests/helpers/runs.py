"""Running ``python -m lplgrad`` in a subprocess, and killing it at a :class:`~helpers.pause.PauseAt` marker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: how long a test waits for a subprocess: a guard against a hang (a deadlock), never a measure of
#: speed, so it is far longer than any run takes on a loaded machine
HANG_S = 3600
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONWARNINGS": "ignore",
    "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
}


def start_paused(cmd: list[str], marker: Path, timeout: float = HANG_S) -> subprocess.Popen:
    """Start ``cmd`` and return once it wrote ``marker`` (it then waits); fails if it ends first."""
    # a session of its own: the kill reaches a DDP run's other processes too
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            kill(proc)
            raise AssertionError(
                f"the run ended (exit {proc.returncode}) before its pause: {proc.stderr.read()[-3000:]}"
            )
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"no pause marker {marker} after {timeout} s")
        time.sleep(0.01)
    return proc


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every process of its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    if proc.stderr is not None:
        proc.stderr.close()


def start_and_kill(cmd: list[str], marker: Path) -> None:
    """Run ``cmd`` (with pause options) until its pause, then SIGKILL it."""
    kill(start_paused(cmd, marker))
