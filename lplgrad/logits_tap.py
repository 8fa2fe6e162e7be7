"""M's logits of the query's candidates, kept while the strategy measures them.

The labelling apps show the trained network's class of each proposed image. A strategy computes
M's logits anyway while it measures (uncertainty, gradient norms, embeddings), so
:func:`lplgrad.query.query` with ``keep_logits`` keeps them instead of running M a second time
over the images. A :class:`LogitsTap` listens to M's forward passes (a forward hook, public
PyTorch API) inside each measured batch and keeps the batch's logits when they are exactly one row
per image: those of the passes with gradients on when there are any (a gradient strategy's,
whose no-gradient chunk-size probes are left out), else of all passes. A batch where M ran several
times per image, or not at all, gives None, and so does the whole tap: the caller then runs the
forward pass itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def one_row_each(calls: list[tuple[bool, Tensor]], n: int) -> Tensor | None:
    """The logits (n, classes) of one measured batch of ``n`` images from M's forward passes
    ``calls`` ((gradients on?, logits) each), or None when they are not one row per image."""
    for chosen in ([t for grad, t in calls if grad], [t for _, t in calls]):
        if chosen and all(t.dim() == 2 for t in chosen) and sum(len(t) for t in chosen) == n:
            return torch.cat(chosen)
    return None


class LogitsTap:
    """The logits ``net`` computes inside :meth:`batch` blocks, one tensor (or None) per block."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.batches: list[Tensor | None] = []

    @contextmanager
    def batch(self, n: int) -> Iterator[None]:
        """Listen to ``net`` while a batch of ``n`` images is measured."""
        calls: list[tuple[bool, Tensor]] = []

        def hook(module, inputs, output) -> None:
            logits = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(logits, Tensor):
                calls.append((torch.is_grad_enabled(), logits.detach()))

        handle = self.net.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        self.batches.append(one_row_each(calls, n))

    def logits(self, rows: int) -> Tensor | None:
        """Every measured image's logits in the measured order (rows, classes), on the CPU, when
        every batch gave one row per image and they add up to ``rows``; else None."""
        if not self.batches or any(b is None for b in self.batches):
            return None
        out = torch.cat(self.batches).cpu()
        return out if len(out) == rows else None
