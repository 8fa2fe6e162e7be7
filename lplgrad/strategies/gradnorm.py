"""Entropy-gradient-norm queries: Ent-GradNorm (Wang et al., AAAI 2022) and LPLgrad's query.

Score of x = norm of dH(x)/dtheta over the parameters theta of M, M in eval mode, no update
(paper Eq. 6-8, docs/method.md §3). ``norm="per_tensor"`` (default) sums each tensor's L2 norm as the
authors' code does; ``norm="global"`` is the Frobenius norm of the paper's text.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor, nn

from lplgrad.errors import ConfigError
from lplgrad.gradnorm import (
    UnsupportedModel,
    combine,
    per_sample_sq_norms,
    per_sample_sq_norms_loop,
    supports,
)
from lplgrad.gradnorm.head import head_only, per_sample_sq_norms_head
from lplgrad.losses import entropy
from lplgrad.strategies.base import Learner, QueryStrategy


def _entropy_of(model: nn.Module, x: Tensor) -> Tensor:
    return entropy(model(x)[0])  # (B,)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def auto_chunk_size(model: nn.Module, example: Tensor, budget_bytes: int, most: int = 256) -> int:
    """Largest chunk whose activations and gradients fit ``budget_bytes`` (1 to ``most``).

    One forward pass of a single sample measures the activation bytes per sample; the query
    holds about three times that (activations, their gradients, unfolded inputs).
    """
    sizes = []
    hooks = [
        m.register_forward_hook(
            lambda m, i, o: sizes.append(o.numel() * o.element_size() if isinstance(o, Tensor) else 0)
        )
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    per_sample = max(3 * sum(sizes), 1)
    return int(max(1, min(most, budget_bytes // per_sample)))


class EntGradNorm(QueryStrategy):
    """Largest gradient norm of the output entropy first.

    When M's classifier is all that trains (``trainable_stages 0``), "batched" takes the closed
    form of :mod:`lplgrad.gradnorm.head` instead: one forward pass, no backward.

    chunk_size: samples per batched backward pass; None picks it from the model and free
    memory: at most ``max_memory_mb`` (None: 512 MB on a CPU, a quarter of the free memory of
    a GPU) and at most a quarter of what is free. method: "batched" (hooks, the default), or "loop" (one
    sample at a time, as the authors' code; also the fallback for layers the hooks do not cover).
    """

    def __init__(
        self,
        norm: Literal["per_tensor", "global"] = "per_tensor",
        chunk_size: int | None = None,
        max_memory_mb: int | None = None,
        method: Literal["batched", "loop"] = "batched",
    ) -> None:
        if norm not in ("per_tensor", "global"):
            raise ConfigError(f"strategy norm must be 'per_tensor' or 'global', got {norm!r}")
        if method not in ("batched", "loop"):
            raise ConfigError(f"strategy method must be 'batched' or 'loop', got {method!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError("strategy chunk_size must be positive")
        self.norm = norm
        self.chunk_size = chunk_size
        self.max_memory_mb = max_memory_mb
        self.method = method
        self._auto: int | None = None
        self._warned = False
        self._loop_only = False  # set when the model turned out not to suit the hooks

    def sq_norms(self, net: nn.Module, x: Tensor) -> Tensor:
        """Per-sample, per-tensor squared gradient norms of H. x: (B, ...) -> (B, n_tensors)"""
        method = "loop" if self._loop_only else self.method
        if method == "batched" and (reason := supports(net)) is not None:
            if not self._warned:
                warnings.warn(f"per-sample gradients fall back to the one-sample loop: {reason}")
                self._warned = True
            method = "loop"
        if method == "batched" and head_only(net):  # the classifier alone trains: closed form, no backward pass
            sq = per_sample_sq_norms_head(net, x, entropy)
            if sq is not None:
                return sq
        if method == "batched":
            chunk = self.resolve_chunk(net, x)
            try:
                return torch.cat([per_sample_sq_norms(net, c, _entropy_of) for c in x.split(chunk)])
            except UnsupportedModel as e:  # found while running (a layer called twice per forward)
                self._loop_only = True
                warnings.warn(f"per-sample gradients fall back to the one-sample loop: {e}")
        return per_sample_sq_norms_loop(net, x, _entropy_of)

    def resolve_chunk(self, net: nn.Module, x: Tensor) -> int:
        """``chunk_size``, or the automatic one (computed once, from a sample of ``x``)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if self._auto is None:
            free = _available_bytes(x.device) // 4
            cap = self.max_memory_mb << 20 if self.max_memory_mb else (free if x.device.type == "cuda" else 512 << 20)
            # a GPU pays per kernel launch: chunks up to a whole scoring batch
            self._auto = auto_chunk_size(net, x, min(cap, free), most=1024 if x.device.type == "cuda" else 256)
        return self._auto

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return combine(self.sq_norms(learner.net, x).float(), self.norm)  # (B,)


class LPLgrad(EntGradNorm):
    """LPLgrad's query (the same score as Ent-GradNorm); the method is this query with M trained
    jointly with the loss-prediction model A (``model.use_aux: true``). With ``use_aux: false``
    it is the paper's ablation "without A" (Tables V, VI)."""
