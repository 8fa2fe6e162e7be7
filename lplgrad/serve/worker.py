"""The one background thread that trains: requests never train, they only ask for a training.

A request while nothing runs starts a training; requests that arrive while a training runs are
coalesced into exactly one more training after it (which then reads every change made
meanwhile). A training that fails because Label Studio does not answer
(:class:`~lplgrad.errors.LabelStudioError`) is logged in one line and tried again later, after
5 s, 10 s, 20 s, ... up to ``retry_max``; nothing is lost, since each training reads the whole
project again. Any other expected failure (:class:`~lplgrad.errors.LPLgradError`) is logged in
one line and waits for the next request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lplgrad.errors import LabelStudioError, LPLgradError

log = logging.getLogger("lplgrad.serve")


class Worker:
    """Runs ``job()`` in one thread when asked (see the module docstring)."""

    def __init__(self, job: Callable[[], Any], retry_first: float = 5.0, retry_max: float = 300.0) -> None:
        self.job, self.retry_first, self.retry_max = job, retry_first, retry_max
        self.cond = threading.Condition()
        self.pending = False
        self.busy = False
        self.stopped = False
        self.retry_at: float | None = None
        self.delay = retry_first
        self.runs = 0  # trainings started
        self.failures = 0
        self.thread = threading.Thread(target=self._loop, name="lplgrad-serve-worker", daemon=True)

    def start(self) -> Worker:
        self.thread.start()
        return self

    def request(self, reason: str) -> None:
        """Ask for a training (coalesced with any other request not started yet)."""
        with self.cond:
            if not self.pending:
                log.info("training requested: %s%s", reason, " (after the one running)" if self.busy else "")
            self.pending = True
            self.retry_at = None
            self.cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no training runs or is pending (a scheduled retry counts as pending)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.busy or self.pending or self.retry_at is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def _next(self) -> bool:
        """Wait for a request or a retry that is due; False when stopped."""
        with self.cond:
            while not self.stopped:
                if self.retry_at is not None and time.monotonic() >= self.retry_at:
                    self.retry_at, self.pending = None, True
                if self.pending:
                    self.pending, self.busy = False, True
                    return True
                wait = None if self.retry_at is None else max(0.0, self.retry_at - time.monotonic())
                self.cond.wait(wait)
            return False

    def _loop(self) -> None:
        while self._next():
            self.runs += 1
            retry = False
            try:
                self.job()
                self.delay = self.retry_first
            except LabelStudioError as e:
                self.failures += 1
                retry = True
                log.warning("training failed: %s; trying again in %.0f s", e, self.delay)
            except LPLgradError as e:
                self.failures += 1
                log.warning("training failed: %s", e)
            except Exception as e:  # the thread must survive anything: one line, then the trace
                self.failures += 1
                log.exception("training failed unexpectedly: %s: %s", type(e).__name__, e)
            with self.cond:
                self.busy = False
                if retry and not self.pending:
                    self.retry_at = time.monotonic() + self.delay
                    self.delay = min(self.delay * 2, self.retry_max)
                self.cond.notify_all()
