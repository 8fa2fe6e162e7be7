"""What the backend keeps in ``--state_dir`` so that a restart continues where it was.

``state.json`` (written atomically) holds the model version, the project it serves, how many
labels the last training used and when it ended, the annotation events counted towards the next
training, the tasks whose image could not be read, the last scoring: task id -> (predicted
class, score), which ``/predict`` answers from, and the last trained training's signals
(:mod:`~lplgrad.serve.signals`): the stop signal's kappa and advice, the audit tasks (never
predicted, never trained on) and the accuracy measured on those labelled, with its interval. ``model.ckpt`` beside it is the network
(:func:`lplgrad.labeling.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lplgrad.records import atomic_write

STATE = "state.json"
PREFIX = "lplgrad-"


def version_name(n: int) -> str:
    """The model version Label Studio sees: ``lplgrad-<n>``, n trainings so far."""
    return f"{PREFIX}{n}"


@dataclass
class ServeState:
    """The backend's memory (see the module docstring). ``scores``: task id (as a string, JSON
    keys) -> [class or None, score]; ascending score = most informative first. ``audit``: the
    audit tasks' ids; ``audit_estimate``: :meth:`lplgrad.estimate.Interval.as_dict` (None: not
    trained, or no audit); ``stop_kappa`` (None: not trained, or no earlier trained network)."""

    version: int = 0
    project: int | None = None
    labels: int = 0
    trained_at: str | None = None
    pending_events: int = 0
    skipped: list[str] = field(default_factory=list)
    scores: dict[str, list[Any]] = field(default_factory=dict)
    first_pick: int | None = None
    last_error: str | None = None
    audit: list[int] = field(default_factory=list)
    audit_estimate: dict[str, Any] | None = None
    stop_kappa: float | None = None
    stop_suggested: bool = False

    @property
    def model_version(self) -> str:
        return version_name(self.version)

    def summary(self) -> dict[str, Any]:
        """What ``/health`` and the log show (everything but the scores and the audit's task ids)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("scores", "audit")}
        return {
            **out,
            "model_version": self.model_version,
            "scored_tasks": len(self.scores),
            "audit_tasks": len(self.audit),
        }


class StateFile:
    """The state, shared by the routes and the worker behind a lock, saved after every change."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE
        self.lock = threading.Lock()
        self.state = load_state(self.path)

    def update(self, **changes: Any) -> ServeState:
        """Change fields and save; returns the state."""
        with self.lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            save_state(self.path, self.state)
            return self.state

    def read(self) -> ServeState:
        with self.lock:
            return self.state


def load_state(path: Path) -> ServeState:
    """The saved state, or a fresh one when there is none."""
    if not path.is_file():
        return ServeState()
    data = json.loads(path.read_text())
    known = set(ServeState.__dataclass_fields__)
    return ServeState(**{k: v for k, v in data.items() if k in known})


def save_state(path: Path, state: ServeState) -> None:
    atomic_write(path, json.dumps(asdict(state), indent=1, sort_keys=True) + "\n")
