"""Mean and standard deviation over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof 1) of ``n`` values; ``std`` is None for n = 1."""

    mean: float
    std: float | None
    n: int


def mean_std(values: Sequence[float]) -> Stat | None:
    """None for no values."""
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stat(mean, std, n)
