"""The input of a backbone's classifier (``net.head``), read during a forward pass: BADGE, BALD's
head-only passes and WAAL's critic work on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn


@contextmanager
def classifier_inputs(net: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every forward pass of ``net`` appends its classifier's input (B, ...) to
    the list yielded (after any dropout placed before the classifier)."""
    seen: list[Tensor] = []
    handle = net.head.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    try:
        yield seen
    finally:
        handle.remove()
