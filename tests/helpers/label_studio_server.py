"""A real Label Studio started on a loopback port for integration tests (as
tests/test_label_studio_live.py starts it), with extra environment variables."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TOKEN = "lplgrad0integration0test0token0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    """Wait until ``url`` answers 200, failing with the log's tail if the process ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(1)
        assert proc.poll() is None, log.read_text()[-3000:]
    proc.terminate()
    pytest.fail(f"{url} did not answer within {seconds} s")


@contextmanager
def label_studio(base: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """Label Studio with local-files serving below ``base/root`` and the legacy token ``TOKEN``;
    yields (its URL, the document root)."""
    binary = os.environ.get("LPLGRAD_LABEL_STUDIO") or shutil.which("label-studio")
    if binary is None:
        if os.environ.get("LPLGRAD_REQUIRE_LABEL_STUDIO"):
            pytest.fail("label-studio is not installed (LPLGRAD_LABEL_STUDIO names its executable)")
        pytest.skip("label-studio is not installed: pip install label-studio==1.23.2 in its own environment")
    (base / "root").mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base / "root"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        **extra_env,
    }
    args = ["start", "--no-browser", "--data-dir", str(base / "data"), "--internal-host", "127.0.0.1"]
    args += ["-p", str(port), "--username", "admin@example.com", "--password", "lplgrad-test-password"]
    args += ["--user-token", TOKEN, "--enable-legacy-api-token"]
    log_path = base / "label_studio.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([binary, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", proc, log_path, 300)
            yield f"http://127.0.0.1:{port}", base / "root"
        finally:
            proc.terminate()
            proc.wait(30)
