"""Callbacks: the active-learning rounds, when the run is saved, the per-round figures in TensorBoard, the
query's progress bar, the stop signal."""

from lplgrad.callbacks.base import RoundCallback, RoundEnd
from lplgrad.callbacks.checkpoint import RoundCheckpoint
from lplgrad.callbacks.figures import RoundFigures
from lplgrad.callbacks.loop import ActiveLearningLoop
from lplgrad.callbacks.progress import QueryProgressBar
from lplgrad.callbacks.stop import StopSignal

__all__ = [
    "ActiveLearningLoop",
    "QueryProgressBar",
    "RoundCallback",
    "RoundCheckpoint",
    "RoundEnd",
    "RoundFigures",
    "StopSignal",
]
