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


def input_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s floating-point parameters: what its inputs must be cast to under
    Lightning's true precisions (``bf16-true``, ``16-true``, ``64-true`` convert the network, and
    only the batches Lightning itself feeds to ``training_step``)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


def run_eval(
    module: nn.Module,
    loader: Iterable,
    device: torch.device,
    step: Callable[[Tensor, Any], T],
    on_batch: Callable[[int], None] | None = None,
) -> list[T]:
    """``step(x, y)`` for every batch ``(x, y)`` of ``loader``, ``x`` moved to ``device``, with
    ``module`` in eval mode and gradients off (a step that needs them turns them on itself, as
    the gradient-norm query does), floating-point ``x`` cast to the network's dtype
    (:func:`input_dtype`). ``on_batch(n)`` is called after each batch of n samples."""
    out = []
    dtype = input_dtype(module)
    with eval_mode(module), torch.no_grad():
        for x, y in loader:
            x = x.to(device, dtype=dtype) if dtype is not None and x.is_floating_point() else x.to(device)
            out.append(step(x, y))
            if on_batch is not None:
                on_batch(len(x))
    return out
