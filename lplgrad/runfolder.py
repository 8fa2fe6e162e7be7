"""One writer per output folder: the run folder of ``python -m lplgrad fit`` and the ``--out``
folder of ``python -m lplgrad.label``.

A run claims its folder with an advisory lock (``fcntl.flock``) on ``<folder>/.lock``, which
holds the writer's PID. A second run there stops with one line naming that PID. The kernel
drops the lock when its process dies, however it dies, so a stale ``.lock`` left by a killed
run blocks nothing: the resume takes it over. A run that fails before it wrote anything worth
keeping removes the folder it created, so a failed start leaves no empty or event-only folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from lplgrad.errors import RunLockedError

LOCK = ".lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


class RunFolder:
    """The folder a run writes to, locked while it runs.

    Args:
        elsewhere: how to start somewhere else, for the line a second run prints.
    """

    def __init__(self, elsewhere: str) -> None:
        self.elsewhere = elsewhere
        self.path: Path | None = None
        self.created = False
        self._fd: int | None = None

    def claim(self, path: str | Path) -> None:
        """Create ``path`` if needed and lock it, or stop with :class:`RunLockedError`."""
        path = Path(path)
        if self._fd is not None:
            if path.resolve() == self.path.resolve():
                return
            raise RuntimeError(f"{self.path} is already claimed")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{path} is in use by another run (PID {_holder(path / LOCK)}): wait until it ends, or {self.elsewhere}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.path, self.created, self._fd = path, created, fd

    @property
    def claimed(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock, and remove the lock file."""
        if self._fd is None:
            return
        try:
            (self.path / LOCK).unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def abandon(self, worth_keeping: Callable[[Path], bool]) -> None:
        """After a failure: unlock, and remove the folder when this run created it and it holds
        nothing ``worth_keeping`` (records or a checkpoint to resume from)."""
        path, created = self.path, self.created
        self.release()
        if path is not None and created and path.is_dir() and not worth_keeping(path):
            shutil.rmtree(path, ignore_errors=True)

    def clear(self) -> None:
        """Delete everything in the folder but the lock (``--overwrite``)."""
        for child in self.path.iterdir():
            if child.name == LOCK:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
