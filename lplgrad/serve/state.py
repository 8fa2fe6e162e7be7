"""What the backend keeps in ``--state_dir`` so that a restart continues where it was.

``state.json`` (written atomically) holds the model version, the project it serves, how many
labels the last training used and when it ended, the annotation events counted towards the next
training, the tasks whose image could not be read, and the last trained training's signals
(:mod:`~lplgrad.serve.signals`): the stop signal's kappa and advice, the audit tasks (never
predicted, never trained on) and the accuracy measured on those labelled, with its interval.
``scores.json`` beside it holds the last scoring, task id -> (predicted class, score), which
``/predict`` answers from, with the version it belongs to; it is written only when a training
changes it, so that counting an annotation event does not rewrite ten thousand scores.
``model.ckpt`` is the network (:func:`lplgrad.labeling.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lplgrad.records import atomic_write

STATE = "state.json"
SCORES = "scores.json"
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

    def as_dict(self, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields as a dict, without those in ``leave_out`` (no deep copy: the scores can be large)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in leave_out}

    def summary(self) -> dict[str, Any]:
        """What ``/health`` and the log show (everything but the scores and the audit's task ids)."""
        out = self.as_dict(("scores", "audit"))
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
        """Change fields and save (``scores.json`` too when the scores change); returns the state."""
        with self.lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            if "scores" in changes:  # first: a state.json of the new version never meets the old scores
                save_scores(self.dir / SCORES, self.state)
            save_state(self.path, self.state)
            return self.state

    def read(self) -> ServeState:
        with self.lock:
            return self.state


def load_state(path: Path) -> ServeState:
    """The saved state, or a fresh one when there is none; the scores from ``scores.json`` when
    they belong to the saved version (an older backend kept them in ``state.json``)."""
    if not path.is_file():
        return ServeState()
    data = json.loads(path.read_text())
    known = {f.name for f in fields(ServeState)}
    state = ServeState(**{k: v for k, v in data.items() if k in known})
    scores = path.parent / SCORES
    if scores.is_file():
        saved = json.loads(scores.read_text())
        state.scores = saved["scores"] if saved.get("version") == state.version else {}
    return state


def save_state(path: Path, state: ServeState) -> None:
    atomic_write(path, json.dumps(state.as_dict(("scores",)), indent=1, sort_keys=True) + "\n")


def save_scores(path: Path, state: ServeState) -> None:
    atomic_write(path, json.dumps({"version": state.version, "scores": state.scores}, separators=(",", ":")) + "\n")
