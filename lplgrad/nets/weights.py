"""Starting a backbone from trained weights, and training only its last stages.

Shared by lplgrad's own ResNet and the torchvision and timm backbones: reading a weights file
(a state_dict, or a checkpoint holding one under ``state_dict``, ``model`` or ``net.``-prefixed
keys as lplgrad's Lightning checkpoints do), the one-line error when weights are missing, and
freezing every parameter before the last ``trainable_stages`` stages (frozen BatchNorm keeps
its running statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lplgrad.errors import LPLgradError, WeightsNotFoundError

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, Tensor]:
    """The tensors of a weights file. A checkpoint's ``state_dict`` / ``model`` entry is
    unwrapped, and keys under ``prefix`` (e.g. ``"net."`` in an lplgrad checkpoint) are taken
    with the prefix removed when there are any."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: one line
        raise WeightsNotFoundError(f"{path} is not a weights file torch can read: {str(e).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def load_except(model: nn.Module, state: dict[str, Tensor], skip: Sequence[str], source: str) -> None:
    """Load ``state`` into ``model``, leaving out keys under the ``skip`` prefixes (the head, sized
    for other classes); anything else that does not fit is an error naming the first mismatch."""
    keep = {k: v for k, v in state.items() if not any(k.startswith(s) for s in skip)}
    own = model.state_dict()
    wrong = [k for k, v in keep.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in keep and not any(k.startswith(s) for s in skip)]
    if wrong or missing:
        what = (
            f"{wrong[0]} has shape {tuple(keep[wrong[0]].shape)} there, {tuple(own[wrong[0]].shape)} here"
            if wrong
            else f"{missing[0]} is missing there"
        )
        raise WeightsNotFoundError(
            f"{source} does not fit this backbone ({len(wrong) + len(missing)} tensors differ; "
            f"{what}): another architecture, width or input channels?"
        )
    model.load_state_dict(keep, strict=False)


def freeze_before(model: nn.Module, stages: Sequence[str], trainable_stages: int | None) -> None:
    """Train only the last ``trainable_stages`` of ``stages`` (module names) and whatever comes
    after the last stage (the head); None trains everything, 0 the head alone."""
    if trainable_stages is None:
        return
    if not 0 <= trainable_stages <= len(stages):
        raise LPLgradError(
            f"trainable_stages must be between 0 and {len(stages)} (the stages are {list(stages)}), "
            f"got {trainable_stages}"
        )
    names = [n for n, _ in model.named_parameters()]
    under = lambda n, s: n.startswith(s + ".")  # noqa: E731
    last = max((i for i, n in enumerate(names) if under(n, stages[-1])), default=-1)
    keep = set(names[last + 1 :])
    for s in stages[len(stages) - trainable_stages :]:
        keep |= {n for n in names if under(n, s)}
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)


def frozen_batchnorms_to_eval(model: nn.Module) -> None:
    """BatchNorm layers whose parameters are all frozen keep their running statistics: eval mode."""
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, _BN) and params and not any(p.requires_grad for p in params):
            m.eval()


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last nn.Linear (its classifier)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise LPLgradError(f"{type(model).__name__} has no nn.Linear classifier to resize")
    return found[-1]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def one_channel_stem(model: nn.Module) -> None:
    """The first 3-channel convolution made 1-channel, its weights summed over the colours: a grey
    image then gives what the pretrained network gave for that image in colour (R = G = B)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            conv = nn.Conv2d(
                1,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                m.groups,
                m.bias is not None,
                m.padding_mode,
            )
            with torch.no_grad():
                conv.weight.copy_(m.weight.sum(1, keepdim=True))
                if m.bias is not None:
                    conv.bias.copy_(m.bias)
            replace_module(model, name, conv)
            return
    raise LPLgradError(f"{type(model).__name__} has no 3-channel convolution to take one-channel images")
