"""The backend behind the routes: its state, its worker, the project it serves, and the rule
that turns annotation events into trainings (every ``train_every`` of them; the count survives
a restart)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lplgrad.errors import LPLgradError
from lplgrad.serve.state import StateFile
from lplgrad.serve.worker import Worker

log = logging.getLogger("lplgrad.serve")

#: webhook actions that change the labels -> how many annotations a payload names
ANNOTATION_ACTIONS: dict[str, Callable[[dict], int]] = {
    "ANNOTATION_CREATED": lambda data: 1,
    "ANNOTATION_UPDATED": lambda data: 1,
    "ANNOTATION_DELETED": lambda data: 1,
    "ANNOTATIONS_CREATED": lambda data: len(data.get("annotation") or []) or 1,
    "ANNOTATIONS_DELETED": lambda data: len(data.get("annotations") or []) or 1,
}
START_TRAINING = "START_TRAINING"


@dataclass
class Auth:
    """HTTP basic auth the routes require (off when ``user`` is None)."""

    user: str | None = None
    password: str | None = None


def project_id(value: Any) -> int | None:
    """A project id from ``/setup``'s ``"<id>.<created_at>"``, a webhook's ``{"id": ...}`` or an int."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.split(".")[0].isdigit():
        return int(value.split(".")[0])
    return None


class Backend:
    """The state folder's :class:`StateFile`, and a :class:`Worker` running ``train(backend)``."""

    def __init__(
        self,
        state_dir: Path,
        train: Callable[[Backend], Any],
        train_every: int = 10,
        project: int | None = None,
        auth: Auth | None = None,
        retry_first: float = 5.0,
        retry_max: float = 300.0,
    ) -> None:
        self.state = StateFile(state_dir)
        self.train_every = train_every
        self.auth = auth or Auth()
        if project is not None and self.state.read().project != project:
            self.state.update(project=project)
        self.worker = Worker(lambda: self._train(train), retry_first, retry_max)
        self.predictor = None  # a Predictor for tasks the last scoring did not cover (lplgrad.serve.predictor)

    def _train(self, train: Callable[[Backend], Any]) -> Any:
        if self.state.read().project is None:
            raise LPLgradError("no project yet: connect the backend to a Label Studio project (Settings > Model)")
        try:
            return train(self)
        except LPLgradError as e:  # Label Studio unreachable too (LabelStudioError): kept for /health
            self.state.update(last_error=str(e))
            raise

    def adopt(self, value: Any) -> bool:
        """Take the project of a request as the one served when none is yet; False when the
        request is about another project (ignored)."""
        pid = project_id(value)
        current = self.state.read().project
        if pid is None or pid == current:
            return True
        if current is None:
            self.state.update(project=pid)
            log.info("serving Label Studio project %d", pid)
            return True
        return False

    def event(self, action: str, data: dict) -> str:
        """A webhook: annotation events are counted and every ``train_every`` of them starts a
        training; START_TRAINING starts one. Returns what was done."""
        if not self.adopt(data.get("project")):
            return "ignored: another project"
        if action == START_TRAINING:
            self.state.update(pending_events=0)  # the training reads every change counted so far
            self.worker.request("START_TRAINING")
            return "training requested"
        if action not in ANNOTATION_ACTIONS:
            return "ignored"
        with self.state.lock:  # count and decide atomically: two webhooks at once are two events
            count = self.state.state.pending_events + ANNOTATION_ACTIONS[action](data)
            due = self.train_every > 0 and count >= self.train_every
            self.state.state.pending_events = 0 if due else count
        self.state.update()
        if due:
            self.worker.request(f"{count} annotation events")
            return "training requested"
        return f"counted ({count} of {self.train_every})" if self.train_every else "counted"
