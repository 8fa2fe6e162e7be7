"""The batched per-sample gradient norms on real architectures (random weights, small inputs)
against the one-sample definition in float64; frozen layers; library backbones as M."""

import warnings

import pytest
import torch
from torch import nn

from lplgrad.gradnorm import per_sample_sq_norms, per_sample_sq_norms_loop
from lplgrad.gradnorm import batched, reference
from lplgrad.gradnorm.batched import _BN
from lplgrad.nets import ResNet18, TimmNet, TorchvisionNet
from helpers.records import sample_entropy

timm = pytest.importorskip("timm")


def perturb(model: nn.Module, seed: int) -> nn.Module:
    """Norm layers, running statistics and direct parameters away from their initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm, *_BN)) and getattr(m, "weight", None) is not None:
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, _BN):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.2 * torch.rand(m.running_var.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(("layer_scale", "pos_embed", "cls_token", "gamma")):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


ARCHITECTURES = {
    "torchvision resnet18": lambda: TorchvisionNet(5, 3, "resnet18", image_size=32),
    "torchvision mobilenet_v3_small": lambda: TorchvisionNet(5, 3, "mobilenet_v3_small", image_size=32),
    "torchvision efficientnet_b0": lambda: TorchvisionNet(5, 3, "efficientnet_b0", image_size=32),
    "torchvision convnext_tiny": lambda: TorchvisionNet(5, 3, "convnext_tiny", image_size=32),
    "timm vit_tiny": lambda: TimmNet(5, 3, "vit_tiny_patch16_224", image_size=32, model_args={"patch_size": 8}),
    "timm convnext_atto (LayerNorm2d)": lambda: TimmNet(5, 3, "convnext_atto", image_size=32),
}


def batched_and_loop(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    net = net.double().eval()
    x = x.double()
    return per_sample_sq_norms(net, x, sample_entropy), per_sample_sq_norms_loop(net, x, sample_entropy)


@pytest.fixture
def loop_fallbacks(monkeypatch) -> list:
    """The tensors the batched computation hands to the one-sample loop, call by call."""
    calls = []
    real = reference.per_sample_sq_norms_loop
    monkeypatch.setattr(
        batched,
        "per_sample_sq_norms_loop",  # the name batched.py calls
        lambda m, x, f, params=None: calls.append(params) or real(m, x, f, params),
    )
    return calls


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_batched_norms_equal_the_float64_loop(name, loop_fallbacks):
    torch.manual_seed(0)
    net = perturb(ARCHITECTURES[name](), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast, loop = batched_and_loop(net, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    assert fast.shape == loop.shape and fast.shape[1] == len(list(net.parameters()))
    rel = ((fast.double() - loop) / loop.abs().clamp_min(1e-30)).abs().max().item()
    assert rel < 1e-6, rel  # the per-tensor norms are accumulated in float32
    assert loop_fallbacks == []  # position embedding, class token, layer scales: copies, or torch.func


class GroupNormNet(nn.Module):
    """GroupNorm, a layer scale used directly, and a matrix used directly in a way per-sample copies
    do not fit (x @ W on (B, D)), and an in-place update torch.func cannot batch: those tensors
    alone go through the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.w = nn.Parameter(torch.randn(8, 8) * 0.3)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        f = self.scale * torch.relu(self.gn(self.conv(x)))
        pooled = f.mean((2, 3))
        pooled = pooled + 0.0 * float(pooled.detach().sum())  # a Python number from a batched tensor: no vmap
        return self.head(pooled @ self.w), [f]


def test_group_norm_and_a_direct_tensor_the_copies_do_not_fit(loop_fallbacks):
    torch.manual_seed(3)
    net = perturb(GroupNormNet(), 4)
    fast, loop = batched_and_loop(net, torch.randn(4, 3, 6, 6))
    assert ((fast.double() - loop) / loop.abs()).abs().max() < 1e-6
    assert [[p.shape for p in params] for params in loop_fallbacks[:1]] == [[(8, 1, 1), (8, 8)]]


def test_frozen_layers_are_left_out_of_the_score():
    net = ResNet18(5, 3, width=4, trainable_stages=1)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("layer4.", "linear.")) for n in trainable)
    fast, loop = batched_and_loop(perturb(net, 5), torch.randn(3, 3, 16, 16))
    assert fast.shape[1] == len(trainable)
    assert ((fast.double() - loop) / loop.abs()).abs().max() < 1e-6
    net.train()
    assert not net.bn1.training and net.layer4[0].bn1.training  # frozen BatchNorm keeps its statistics


def test_library_backbones_give_what_the_loss_head_needs():
    net = TorchvisionNet(7, 1, "resnet18", image_size=32, trainable_stages=0)
    logits, feats = net(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 7) and net.feature_channels == [64, 128, 256, 512] and len(feats) == 4
    assert net.head.out_features == 7 and net.model.conv1.in_channels == 1
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["model.fc.weight", "model.fc.bias"]
    vit = TimmNet(3, 3, "vit_tiny_patch16_224", image_size=32, model_args={"patch_size": 8})
    logits, feats = vit(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3) and all(f.dim() == 3 for f in feats) and vit.feature_channels == [192] * 4


@pytest.mark.parametrize("name", ["torchvision convnext_tiny", "timm convnext_atto (LayerNorm2d)"])
def test_norm_layers_with_weights_exactly_zero(name):
    """Where a LayerNorm or GroupNorm weight is exactly 0 its output says nothing about x_hat:
    those layers recompute the statistics; the others still read their output."""
    torch.manual_seed(0)
    net = perturb(ARCHITECTURES[name](), 1)
    norms = [m for m in net.modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]
    with torch.no_grad():
        for m in norms[::2]:
            m.weight[::3] = 0.0
    fast, loop = batched_and_loop(net, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    assert torch.isfinite(fast).all()
    assert ((fast.double() - loop) / loop.abs().clamp_min(1e-30)).abs().max().item() < 1e-6


def test_a_group_norm_with_a_zero_weight():
    torch.manual_seed(3)
    net = perturb(GroupNormNet(), 4)
    with torch.no_grad():
        net.gn.weight[1] = 0.0
    fast, loop = batched_and_loop(net, torch.randn(4, 3, 6, 6))
    assert ((fast.double() - loop) / loop.abs()).abs().max() < 1e-6
