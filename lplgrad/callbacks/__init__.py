"""Callbacks: the active-learning rounds."""
from lplgrad.callbacks.loop import ActiveLearningLoop

__all__ = ["ActiveLearningLoop"]
