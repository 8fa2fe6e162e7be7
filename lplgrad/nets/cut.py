"""A backbone cut where its frozen part ends, for the feature cache (``data.feature_cache``,
docs/features.md).

When everything below a point of M is frozen (``trainable_stages``), that part gives the same
outputs every epoch and every round: :class:`FeatureCut` computes them once per image (the
*feature pass*, :meth:`FeatureCut.features`) and then runs only the rest of M on them.

Where the cut goes is read off one forward pass of real images (:func:`plan_cut`): the first
module, in the order the forward pass calls them, that holds a trainable parameter, lifted to the
outermost module that starts at the same call (``layer4`` rather than ``layer4.0.conv1``; the
classifier itself when only the classifier trains). What a cached row holds is that module's input
and, for the stages A reads that are computed before it, their globally pooled outputs: A pools
every stage map (:class:`~lplgrad.nets.loss_head.LossPredictionHead`), so a pooled
(B, C, 1, 1) map gives it the same input, as it gives TypiClust and Coreset theirs.

The rest of M runs as M's own forward pass on a shallow copy of its module tree in which every
module called before the cut is an identity and the cut module reads the cached tensor, every
other module shared with M (so its parameters, hooks and train/eval mode are M's). This suits a
forward pass that, up to the cut, only calls modules one after the other (torchvision and timm
CNNs, lplgrad's ResNets); the plan checks on the real images that the cut network gives M's
logits and stage features, and stops with one line where it does not (a ViT adds its class token
between modules).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor, nn

from lplgrad.errors import ConfigError
from lplgrad.nets.pool import pooled

NOT_FROZEN = (
    "data.feature_cache needs a backbone frozen below some point, and {name} trains every parameter: set "
    "model.backbone.init_args.trainable_stages (0: only the classifier trains; k: the last k stages too)"
)


@dataclass(frozen=True)
class CutPlan:
    """Where M is cut, and the layout of a cached row: ``cut_shape`` (one image's input of the
    ``first`` module), then the pooled outputs of the first ``len(stage_widths)`` stages."""

    first: str  # the first module that trains (qualified name in the backbone)
    skipped: tuple[str, ...]  # the modules called before it: identities after the cut
    cut_shape: tuple[int, ...]
    stage_widths: tuple[int, ...]
    input_shape: tuple[int, ...]  # one image's shape (its channels give the placeholder input)

    @property
    def cut_width(self) -> int:
        return int(torch.Size(self.cut_shape).numel())

    @property
    def width(self) -> int:
        """Values per cached row."""
        return self.cut_width + sum(self.stage_widths)

    def describe(self) -> str:
        return f"cut before {self.first}, {len(self.stage_widths)} frozen stage(s) pooled, {self.width} values a row"


def _calls(backbone: nn.Module, x: Tensor) -> tuple[list[str], Tensor, list[Tensor]]:
    """The modules a forward pass calls, in order (one entry per call), and its outputs, with
    gradients on so that an output's ``requires_grad`` says whether a trainable parameter made it."""
    calls: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda m, i, name=name: calls.append(name))
        for name, m in backbone.named_modules()
        if name
    ]
    try:
        with torch.enable_grad():
            logits, feats = backbone(x)
    finally:
        for h in handles:
            h.remove()
    return calls, logits, list(feats)


def _inside(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + ".")


def plan_cut(backbone: nn.Module, x: Tensor, keep: tuple[str, ...] = ()) -> CutPlan:
    """Where to cut ``backbone`` (in eval mode), from one forward pass of the images ``x``.
    ``keep``: modules the backbone looks up by name during its forward pass (its stages): their
    ancestors are never replaced. x: (B, C, H, W)"""
    calls, _, feats = _calls(backbone, x)
    modules = dict(backbone.named_modules())
    trains = [i for i, n in enumerate(calls) if any(p.requires_grad for p in modules[n].parameters(recurse=False))]
    if not trains:
        raise ConfigError(NOT_FROZEN.format(name=type(backbone).__name__))
    at = trains[0]
    while at > 0 and _inside(calls[at], calls[at - 1]):  # the outermost module that starts here
        at -= 1
    first = calls[at]
    if not any(p.numel() for n in calls[:at] for p in modules[n].parameters(recurse=False)):
        raise ConfigError(NOT_FROZEN.format(name=type(backbone).__name__))
    after = set(calls[at:])
    protected = {a for n in (first, *keep) for a in modules if _inside(n, a)}
    before = [n for n in dict.fromkeys(calls[:at]) if n not in after and n not in protected]
    skipped = tuple(n for n in before if not any(_inside(n, s) for s in before))
    frozen = 0
    while frozen < len(feats) and not feats[frozen].requires_grad:
        frozen += 1
    if any(not f.requires_grad for f in feats[frozen:]):
        raise ConfigError(f"{type(backbone).__name__}: a frozen stage comes after a trainable one; cannot cache it")
    cut = _cut_input(backbone, modules[first], x)
    widths = tuple(int(pooled(f).shape[1]) for f in feats[:frozen])
    return CutPlan(first, skipped, tuple(cut.shape[1:]), widths, tuple(x.shape[1:]))


def _cut_input(backbone: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """The input of ``module`` in a forward pass of ``backbone`` on ``x``."""
    seen: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            backbone(x)
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], Tensor):
        raise ConfigError(f"{type(backbone).__name__}: the input of the module to cut before is not one tensor")
    return seen[0]


class _Slot:
    """The cached tensor of the batch being run (set for the duration of one forward pass)."""

    value: Tensor | None = None


class _Fed(nn.Module):
    """The cut module, fed the cached tensor instead of what reaches it."""

    def __init__(self, inner: nn.Module, slot: _Slot) -> None:
        super().__init__()
        self.inner, self.slot = inner, slot

    def forward(self, *args, **kwargs):
        return self.inner(self.slot.value, *args[1:], **kwargs)


def replaced(root: nn.Module, new: dict[str, nn.Module], copies: list[nn.Module]) -> nn.Module:
    """A shallow copy of ``root`` in which the submodules named in ``new`` are replaced; every
    other submodule (and so every parameter and buffer) is shared with ``root``, which is left as
    it was. The copied containers are appended to ``copies``."""
    if "" in new:
        return new[""]
    out = copy.copy(root)
    out.__dict__["_modules"] = type(root._modules)(root._modules)  # its own child table; the children shared
    copies.append(out)
    for child in dict.fromkeys(n.split(".", 1)[0] for n in new):
        inner = {
            n[len(child) + 1 :] if n != child else "": m for n, m in new.items() if n == child or _inside(n, child)
        }
        setattr(out, child, replaced(root._modules[child], inner, copies))
    return out


class FeatureCut(nn.Module):
    """M for the feature cache: ``backbone`` fed either images or cached rows.

    Its state_dict is the backbone's (the same keys and tensors: the backbone's children are
    its children), so checkpoints are those of an uncached run. ``forward`` takes images
    (B, C, H, W), through the whole backbone, or cached rows (B, width) from :meth:`features`,
    through the part after the cut; either way it returns ``(logits, [stage features])``, the
    stages before the cut as their pooled (B, C, 1, 1) outputs. ``head``, ``feature_channels``
    and ``pretrained`` are the backbone's. :meth:`prepare` makes the plan, from real images,
    before any row is made or read.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        if all(p.requires_grad for p in backbone.parameters()):
            raise ConfigError(NOT_FROZEN.format(name=type(backbone).__name__))
        if any(True for _ in backbone.named_buffers(recurse=False)):
            raise ConfigError(f"{type(backbone).__name__} holds buffers of its own: the feature cache cannot wrap it")
        self.__dict__["backbone"] = backbone  # not a child: its children are ours, under their own names
        for name, child in backbone.named_children():
            self.add_module(name, child)
        for name, p in backbone.named_parameters(recurse=False):
            self.register_parameter(name, p)
        self.feature_channels = list(backbone.feature_channels)
        self.plan: CutPlan | None = None
        # the cut network and its copied containers: outside the module tree (no state_dict keys of their own)
        self.__dict__.update(_suffix=None, _copies=[], _slot=_Slot())

    @property
    def head(self) -> nn.Module:
        return self.backbone.head

    @property
    def pretrained(self) -> bool:
        return bool(getattr(self.backbone, "pretrained", False))

    def train(self, mode: bool = True) -> FeatureCut:
        self.training = mode
        self.backbone.train(mode)  # the backbone's own rule: frozen BatchNorm layers stay in eval mode
        for m in self._copies:
            m.training = mode
        return self

    def prepare(self, x: Tensor) -> CutPlan:
        """Plan the cut from the images ``x`` (at least 2, in eval mode) and check, on them, that
        the cut network gives the backbone's logits and stage features."""
        was = self.training
        self.eval()
        try:
            plan = plan_cut(self.backbone, x, tuple(getattr(self.backbone, "stage_names", ())))
            new: dict[str, nn.Module] = {n: nn.Identity() for n in plan.skipped}
            new[plan.first] = _Fed(self.backbone.get_submodule(plan.first), self._slot)
            copies: list[nn.Module] = []
            self.__dict__.update(_suffix=replaced(self.backbone, new, copies), _copies=copies)
            self.plan = plan
            _check(self, x)
        finally:
            self.train(was)
        return plan

    def features(self, x: Tensor) -> Tensor:
        """The cached rows of images ``x``: the cut module's input, flattened, then the pooled
        outputs of the stages before it. (B, C, H, W) -> (B, width)"""
        plan = self._need_plan()
        seen: list[Tensor] = []
        handle = self.backbone.get_submodule(plan.first).register_forward_pre_hook(lambda m, i: seen.append(i[0]))
        try:
            _, feats = self.backbone(x)
        finally:
            handle.remove()
        parts = [seen[0].flatten(1), *(pooled(f) for f in feats[: len(plan.stage_widths)])]
        return torch.cat([p.to(parts[0].dtype) for p in parts], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if x.dim() != 2:  # images: the whole backbone
            return self.backbone(x)
        plan = self._need_plan()
        B = x.shape[0]
        self._slot.value = x[:, : plan.cut_width].reshape(B, *plan.cut_shape)
        dummy = x.new_zeros(B, plan.input_shape[0], *([1] * (len(plan.input_shape) - 1)))
        try:
            logits, feats = self._suffix(dummy)  # the modules before the cut are identities
        finally:
            self._slot.value = None
        ends = list(accumulate([plan.cut_width, *plan.stage_widths]))
        frozen = [x[:, a:b].reshape(B, -1, 1, 1) for a, b in zip(ends[:-1], ends[1:])]  # (B, C_i, 1, 1)
        return logits, frozen + list(feats[len(frozen) :])

    def _need_plan(self) -> CutPlan:
        if self.plan is None:
            raise RuntimeError("FeatureCut.prepare must see images before rows are made or read")
        return self.plan


def _check(cut: FeatureCut, x: Tensor) -> None:
    """Stop with one line unless the cut network gives the backbone's outputs on ``x``."""
    name = type(cut.backbone).__name__
    with torch.no_grad():
        logits, feats = cut.backbone(x)
        try:
            got, got_feats = cut(cut.features(x))
        except Exception as e:  # noqa: BLE001 - a forward pass that is not a chain of modules: one line
            raise ConfigError(f"{name} cannot be cut before {cut.plan.first} for the feature cache: {e}") from None

    def same(a: Tensor, b: Tensor) -> bool:
        scale = float(a.abs().max().clamp_min(1)) if a.numel() else 1.0
        return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5 * scale)

    if not (same(logits, got) and len(feats) == len(got_feats)) or not all(
        same(pooled(a), pooled(b)) for a, b in zip(feats, got_feats)
    ):
        raise ConfigError(
            f"{name} cannot be cut before {cut.plan.first} for the feature cache: its forward pass does more than "
            "call its modules one after the other up to there (the cut network's outputs differ)"
        )
