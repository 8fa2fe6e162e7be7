"""Every sample's per-tensor squared gradient norm from one batched forward and backward pass.

The LPLgrad query (paper Eq. 7-8, docs/method.md §3) needs, for every candidate x, the gradient of
H(x) with respect to every parameter tensor of M, with M in eval mode. The authors compute it
one sample at a time (:func:`lplgrad.gradnorm.per_sample_sq_norms_loop`). Here one forward pass
records each layer's input, one backward pass computes activation gradients only (no parameter
gradient), and a hook on each layer's output reduces (input, output gradient) to each sample's
squared norm per parameter tensor: Conv2d (any groups, depthwise included) in
:mod:`lplgrad.gradnorm.conv`, Linear (at one or many positions) and eval BatchNorm in
:mod:`lplgrad.gradnorm.layers`, LayerNorm (ConvNeXt's channels-first one included) and GroupNorm in
:mod:`lplgrad.gradnorm.norms`. Parameters used directly by a module (a ViT's position embedding
and class token, ConvNeXt's layer scale) get per-sample copies in the same pass
(:mod:`lplgrad.gradnorm.direct`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from lplgrad.gradnorm.conv import conv_weight_sq
from lplgrad.gradnorm.direct import direct_parameters, hooked_layers, per_sample_copies, sq_norms_of, vmap_sq_norms
from lplgrad.gradnorm.layers import bn_affine, bn_sq, linear_bias_sq, linear_weight_sq
from lplgrad.gradnorm.norms import group_norm_sq, layer_norm_sq
from lplgrad.gradnorm.reference import SampleLoss, per_sample_sq_norms_loop, trainable

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
HOOKED = (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.GroupNorm, *_BN)  # layers whose gradients the hooks reduce


class UnsupportedModel(RuntimeError):
    """The model has a layer whose per-sample gradient the batched hooks cannot compute."""


def supports(model: nn.Module) -> str | None:
    """None when :func:`per_sample_sq_norms` handles ``model``, else the reason it does not.
    Parameters outside the hooked layers are handled too (:mod:`lplgrad.gradnorm.direct`)."""
    for name, m in model.named_modules():
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str) and m.padding != "valid":
                return f"{name}: Conv2d with padding={m.padding!r}"
        elif isinstance(m, _BN):
            if m.training or m.running_mean is None:
                return f"{name}: BatchNorm needs eval mode with running statistics"
    return None


def default_max_bytes(device: torch.device) -> int:
    """How much a layer's reduction may hold at once: 64 MiB on a CPU (cache-sized slices of the
    batch are faster there); on a GPU up to an eighth of the free memory, at most 2 GiB, so that
    each reduction is a few large kernels rather than a loop of small ones."""
    if device.type == "cuda":
        return int(min(2 << 30, torch.cuda.mem_get_info(device)[0] // 8))
    return 64 << 20


def _layer_sq(
    m: nn.Module, a: Tensor, g: Tensor, max_bytes: int, y: Tensor | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """(weight, bias) per-sample squared norms of one layer. a: layer input, g: output gradient,
    y: layer output (read by the normalisation layers when given: none of their weights is 0)."""
    if isinstance(m, nn.Conv2d):
        b_sq = g.sum((2, 3)).pow(2).sum(1) if m.bias is not None else None
        return conv_weight_sq(m, a, g, max_bytes), b_sq
    if isinstance(m, nn.Linear):
        return linear_weight_sq(a, g), linear_bias_sq(g) if m.bias is not None else None
    if isinstance(m, nn.LayerNorm):
        return layer_norm_sq(m, a, g, y)
    if isinstance(m, nn.GroupNorm):
        return group_norm_sq(m, a, g, y)
    return bn_sq(m, a, g, None if a.is_cuda else 1 << 18)


@contextmanager
def _batchnorm_as_affine(model: nn.Module) -> Iterator[None]:
    """Eval BatchNorm layers compute x * scale + shift while the block runs: the same values, and
    a backward pass of one multiply instead of the batch-norm backward kernel."""
    patched = [m for m in model.modules() if isinstance(m, _BN) and "forward" not in vars(m)]
    for m in patched:
        m.forward = partial(bn_affine, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def per_sample_sq_norms(model: nn.Module, x: Tensor, sample_loss: SampleLoss, max_bytes: int | None = None) -> Tensor:
    """Squared L2 norm of each sample's gradient, per trainable parameter tensor of ``model``.

    The model must be in eval mode (so that samples do not interact) and pass :func:`supports`.
    Columns follow ``model.parameters()`` order (trainable ones only). ``max_bytes`` bounds the
    per-sample gradients and Gram matrices a layer holds at once (default:
    :func:`default_max_bytes`).

    x: (B, ...) -> (B, n_tensors)
    """
    reason = supports(model)
    if reason is not None:
        raise UnsupportedModel(reason)
    if max_bytes is None:
        max_bytes = default_max_bytes(x.device)
    column = {id(p): i for i, p in enumerate(trainable(model))}
    out = torch.zeros(x.shape[0], len(column), device=x.device, dtype=torch.float32)
    direct = direct_parameters(model, hooked_layers(model, HOOKED))
    try:
        _hooked_pass(model, x, sample_loss, max_bytes, column, out, direct)
    except _CopiesDoNotFit:  # those tensors alone, by torch.func, else one sample at a time
        out.zero_()
        _hooked_pass(model, x, sample_loss, max_bytes, column, out, [])
        try:
            with _batchnorm_as_affine(model):
                sq = vmap_sq_norms(model, x, sample_loss, direct)
        except Exception:  # noqa: BLE001 - an operation torch.func cannot batch: the definition itself
            sq = per_sample_sq_norms_loop(model, x, sample_loss, params=[d.param for d in direct])
        for i, d in enumerate(direct):
            out[:, column[id(d.param)]] = sq[:, i].float()
    return out


def _outputs_readable(model: nn.Module) -> set[nn.Module]:
    """The LayerNorm and GroupNorm layers whose parameter norms can be read off their output:
    those with no weight exactly 0 (:mod:`lplgrad.gradnorm.norms`). One check for all of them
    together, so that a GPU waits once per chunk rather than once per layer."""
    norms = [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None]
    if not norms:
        return set()
    dev = norms[0].weight.device
    nonzero = torch.stack([(m.weight != 0).all().to(dev) for m in norms]).tolist()
    return {m for m, ok in zip(norms, nonzero) if ok}


class _CopiesDoNotFit(RuntimeError):
    """Per-sample copies of the direct parameters changed what the model computes."""


def _hooked_pass(
    model: nn.Module,
    x: Tensor,
    sample_loss: SampleLoss,
    max_bytes: int,
    column: dict[int, int],
    out: Tensor,
    direct: list,
) -> None:
    """One forward and one backward pass; the layer hooks and the direct parameters' copies add
    each sample's squared norms into ``out``."""
    calls: dict[nn.Module, int] = {}
    readable = _outputs_readable(model)

    def on_forward(m: nn.Module, inputs: tuple, output: Tensor) -> None:
        calls[m] = calls.get(m, 0) + 1
        if calls[m] > 1:
            raise UnsupportedModel(f"{type(m).__name__} is called more than once per forward pass")
        a = inputs[0].detach()
        y = output.detach() if m in readable else None

        def on_grad(g: Tensor) -> None:
            sqs = _layer_sq(m, a, g.detach(), max_bytes, y)
            for p, sq in zip((getattr(m, "weight", None), getattr(m, "bias", None)), sqs):
                if p is not None and sq is not None and id(p) in column:
                    out[:, column[id(p)]] += sq.float()

        if output.requires_grad:
            output.register_hook(on_grad)

    handles = [m.register_forward_hook(on_forward) for m in hooked_layers(model, HOOKED)]
    try:
        with torch.enable_grad(), _batchnorm_as_affine(model), per_sample_copies(direct, x.shape[0]) as copies:
            xg = x.detach().requires_grad_(True)
            losses = sample_loss(model, xg)
            if direct and losses.shape != (x.shape[0],):
                raise _CopiesDoNotFit(f"per-sample losses of shape {tuple(losses.shape)}")
            # gradients of activations (and of the copies) only: parameter gradients are not computed
            grads = torch.autograd.grad(losses.sum(), [xg, *copies], allow_unused=True)
    except RuntimeError as e:
        if direct and not isinstance(e, UnsupportedModel):
            raise _CopiesDoNotFit(str(e)) from e
        raise
    finally:
        for h in handles:
            h.remove()
    for d, sq in zip(direct, sq_norms_of(copies, grads[1:])):
        out[:, column[id(d.param)]] += sq
