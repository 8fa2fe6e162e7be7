"""Dropout before a backbone's classifier, and Monte Carlo dropout at query time.

BALD and BatchBALD (docs/method.md §8) read the network's predictive distribution under dropout.
A backbone without dropout gets one layer before its classifier, as Gal et al. (ICML 2017) and
Kirsch et al. (NeurIPS 2019) do for their CNNs: ``model.head_dropout p`` (off by default).

At query time the T stochastic passes are *consistent*: pass t uses the same dropout mask for
every image of the query (Kirsch et al. §4, "consistent MC dropout"), drawn from a generator seeded
by (seed, round, layer, t), so every batch and every process sees the same T networks, and a
resumed run draws the same masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lplgrad.split import mix_seed


class HeadDropout(nn.Dropout):
    """An ``nn.Dropout`` applied to the input of ``net.head`` by a forward pre-hook: no weights,
    so the checkpoint's keys stay those of the backbone. It drops only while the classifier
    itself is in train mode: M in eval mode (``run_eval(net, ...)``: the test evaluation, the
    figures, the stop signal, the labelling app's classes) has no dropout, whatever the mode of
    the learner the layer is registered in."""

    def __call__(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (F.dropout(inputs[0], self.p, module.training, self.inplace), *inputs[1:])


def attach_head_dropout(net: nn.Module, p: float) -> HeadDropout:
    """Dropout with rate ``p`` before ``net.head``; returns the layer (register it as a child)."""
    layer = HeadDropout(p)
    net.head.register_forward_pre_hook(layer)
    return layer


def head_rate(learner: nn.Module) -> float:
    """The rate of the dropout before the learner's classifier (its ``head_dropout``; 0 when none)."""
    layer = getattr(learner, "head_dropout", None)
    return float(layer.p) if layer is not None else 0.0


def dropout_layers(module: nn.Module) -> list[nn.Dropout]:
    """Every dropout layer with a positive rate inside ``module`` (head dropout excluded)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d))
        and not isinstance(m, HeadDropout)
        and m.p > 0
    ]


def consistent_masks(shape: tuple[int, ...], p: float, samples: int, seed: int, device=None) -> Tensor:
    """T inverted-dropout masks of one sample's ``shape``: (T, *shape), 0 or 1/(1-p)."""
    keep = 1.0 - p
    masks = torch.empty(samples, *shape)
    for t in range(samples):  # one generator per t: the masks do not depend on T
        g = torch.Generator().manual_seed(mix_seed(seed, t))
        masks[t] = torch.bernoulli(torch.full(shape, keep), generator=g)
    return (masks / keep).to(device)


def mask_shape(layer: nn.Module, x: Tensor) -> tuple[int, ...]:
    """The shape of one sample's mask: elementwise for Dropout, one value per channel for the
    channel-wise kinds. x: (B, C, ...)"""
    if isinstance(layer, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        return (x.shape[1],) + (1,) * (x.dim() - 2)
    return tuple(x.shape[1:])


def _apply(x: Tensor, masks: Tensor) -> Tensor:
    """x (T * B, ...) with block t multiplied by masks[t] (T, ...)."""
    t = masks.shape[0]
    return (x.reshape(t, x.shape[0] // t, *x.shape[1:]) * masks[:, None].to(x.dtype)).reshape(x.shape)


@contextmanager
def consistent_dropout(net: nn.Module, samples: int, seed: int, head_p: float = 0.0) -> Iterator[None]:
    """While active, every dropout layer of ``net`` (and, with ``head_p`` > 0, the dropout before
    its classifier) applies pass t's mask to the t-th block of its input: the net is fed T copies
    of a batch stacked as (T * B, ...). Other layers (BatchNorm) keep their eval behaviour."""
    handles = []
    for i, layer in enumerate(dropout_layers(net)):

        def hook(m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor, i: int = i) -> Tensor:
            x = inputs[0]
            return _apply(x, consistent_masks(mask_shape(m, x), m.p, samples, mix_seed(seed, i), x.device))

        handles.append(layer.register_forward_hook(hook))
    if head_p > 0:

        def head_hook(m: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            x = inputs[0]
            masks = consistent_masks(tuple(x.shape[1:]), head_p, samples, mix_seed(seed, 1_000), x.device)
            return (_apply(x, masks), *inputs[1:])

        handles.append(net.head.register_forward_pre_hook(head_hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
