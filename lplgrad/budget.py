"""The experiment's sizes and their arithmetic (SPEC: initial set, b per round, S candidates, budget).

:class:`Budget` checks the sizes on their own and against the pool, and answers what the rounds
loop asks of them: how many to query next, and how many rounds are left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lplgrad.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """``initial`` labeled at random, ``query`` (b) labeled per round from ``subset`` (S) random
    candidates, until ``total`` are labeled (or the whole pool, if it is smaller)."""

    initial: int
    query: int
    subset: int
    total: int

    def __post_init__(self) -> None:
        for name, v in (
            ("initial_size", self.initial),
            ("query_size", self.query),
            ("subset_size", self.subset),
            ("budget", self.total),
        ):
            if v < 1:
                raise ConfigError(f"data.{name} must be positive, got {v}")
        if self.query > self.subset:
            raise ConfigError(
                f"data.query_size ({self.query}) is larger than data.subset_size ({self.subset}): "
                "a round cannot pick more samples than it scores"
            )
        if self.initial > self.total:
            raise ConfigError(f"data.initial_size ({self.initial}) is larger than data.budget ({self.total})")

    def check_pool(self, pool: int) -> bool:
        """Refuse sizes the pool cannot hold; True when S is larger than the unlabeled pool (every
        round then scores the whole pool: allowed, worth a warning)."""
        if self.total > pool:
            raise ConfigError(f"data.budget ({self.total}) is larger than the pool ({pool} training images)")
        if self.initial > pool:
            raise ConfigError(f"data.initial_size ({self.initial}) is larger than the pool ({pool})")
        return self.subset > pool - self.initial

    def target(self, pool: int) -> int:
        """The labeled-set size at which the run ends: the budget, or the whole pool if smaller."""
        return min(self.total, pool)

    def next_query(self, labeled: int, pool: int) -> int:
        """b, or what is left of the budget (0: the run is over)."""
        return max(0, min(self.query, self.target(pool) - labeled))

    def rounds_left(self, labeled: int, pool: int) -> int:
        """The rounds still to train with ``labeled`` labeled now: this one, and one per query left."""
        return 1 + math.ceil(max(0, self.target(pool) - labeled) / self.query)
