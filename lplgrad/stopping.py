"""When to stop labeling: stabilizing predictions (Bloodgood and Vijay-Shanker, CoNLL 2009).

A fixed, seeded stop set of images is predicted after every round; Cohen's kappa between this
round's and the previous round's predictions measures how much the last batch of labels changed
the classifier. Once kappa has stayed at or above ``threshold`` (0.99) for ``rounds`` rounds in
a row (3), more labels are unlikely to change the predictions much, and stopping is suggested.
It is advice: it says the model has stopped changing, not that it is right. Pure functions; the
two applications apply them in :class:`lplgrad.callbacks.StopSignal` and the labeling app.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lplgrad.split import round_generator

THRESHOLD = 0.99
ROUNDS = 3


def kappa(a: Tensor, b: Tensor) -> float:
    """Cohen's kappa between two label vectors of the same images (scikit-learn's); 1.0 when they
    agree everywhere (kappa is undefined for a single class)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu()
    if torch.equal(a, b):
        return 1.0
    value = float(cohen_kappa_score(a.numpy(), b.numpy()))
    return 0.0 if math.isnan(value) else value


def stop_suggested(kappas: Sequence[float | None], threshold: float = THRESHOLD, rounds: int = ROUNDS) -> bool:
    """True once the last ``rounds`` kappas (one per round after the first) are all at or above
    ``threshold``."""
    last = list(kappas)[-rounds:]
    return len(last) == rounds and all(k is not None and k >= threshold for k in last)


def stop_set(pool_size: int, size: int, seed: int) -> Tensor:
    """The fixed, seeded stop set: ``size`` pool indices (all when the pool is smaller), ascending."""
    perm = torch.randperm(pool_size, generator=round_generator(seed, 0, "stop"))
    return perm[: min(size, pool_size)].sort().values


def describe(
    kappa_now: float | None, kappas: Sequence[float | None], threshold: float = THRESHOLD, rounds: int = ROUNDS
) -> str:
    """The console line of a round."""
    if kappa_now is None:
        return "Stop signal: first predictions of the stop set recorded (kappa from the next round on)"
    streak = 0
    for k in reversed(list(kappas)):
        if k is None or k < threshold:
            break
        streak += 1
    if stop_suggested(kappas, threshold, rounds):
        return (
            f"Stop signal: kappa {kappa_now:.4f}, at or above {threshold} for {streak} rounds in a row: the "
            "predictions have stabilised, so more labels are unlikely to change them much; consider stopping "
            "(advice, not a guarantee: check accuracy on labeled data you hold out)"
        )
    return (
        f"Stop signal: kappa {kappa_now:.4f} between this round's and the last round's predictions "
        f"({streak} of {rounds} rounds at or above {threshold})"
    )
