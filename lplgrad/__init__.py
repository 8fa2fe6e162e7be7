"""lplgrad: deep active learning for image classification with LPLgrad (Lightning)."""

__version__ = "0.1.0"
