"""The one way a network is run over a loader outside training: eval mode, no gradient, the
mode restored afterwards. Test evaluation, the query, the figures and the labeling app's
predictions all go through :func:`run_eval`."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block, its previous mode restored after (even on errors)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def run_eval(
    module: nn.Module,
    loader: Iterable,
    device: torch.device,
    step: Callable[[Tensor, Any], T],
    on_batch: Callable[[int], None] | None = None,
) -> list[T]:
    """``step(x, y)`` for every batch ``(x, y)`` of ``loader``, ``x`` moved to ``device``, with
    ``module`` in eval mode and gradients off (a step that needs them turns them on itself, as
    the gradient-norm query does). ``on_batch(n)`` is called after each batch of n samples."""
    out = []
    with eval_mode(module), torch.no_grad():
        for x, y in loader:
            out.append(step(x.to(device), y))
            if on_batch is not None:
                on_batch(len(x))
    return out
