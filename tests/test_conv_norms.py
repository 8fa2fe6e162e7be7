"""Every per-sample Conv2d path equals the definition (float64, one sample at a time), whatever the
geometry; the rule picks the cheap path; BatchNorm layers are restored after the query."""

import pytest
import torch
from torch import nn

from lplgrad.gradnorm import per_sample_sq_norms
from lplgrad.gradnorm.conv import PATHS, choose_path, conv_weight_sq, path_for
from lplgrad.losses import entropy

GEOMETRIES = [  # (C, P (out channels), H, W, kernel, stride, padding, dilation, groups, padding_mode)
    (3, 5, 9, 7, 3, 1, 1, 1, 1, "zeros"),
    (4, 6, 9, 8, 3, 2, 1, 1, 1, "zeros"),
    (4, 6, 10, 10, 3, 2, 0, 1, 1, "zeros"),
    (3, 4, 12, 11, 3, 1, 2, 2, 1, "zeros"),
    (4, 5, 8, 8, 5, 3, 2, 1, 1, "zeros"),
    (2, 3, 7, 9, (3, 1), (1, 2), (1, 0), 1, 1, "zeros"),
    (4, 3, 11, 9, 1, 2, 0, 1, 1, "zeros"),  # strided 1x1: the input is subsampled first
    (4, 3, 8, 8, 1, 1, 1, 1, 1, "zeros"),  # padded 1x1
    (4, 6, 8, 8, 3, 1, 1, 1, 2, "zeros"),  # grouped
    (4, 4, 9, 8, 7, 1, 3, 1, 4, "zeros"),  # depthwise 7x7 (ConvNeXt)
    (3, 6, 9, 10, 3, 2, 1, 1, 3, "zeros"),  # depthwise, channel multiplier 2, stride 2 (MobileNet)
    (4, 4, 11, 9, 5, 2, 2, 1, 4, "zeros"),  # depthwise 5x5, stride 2 (EfficientNet)
    (3, 3, 12, 11, 3, (1, 2), 2, 2, 3, "zeros"),  # depthwise, dilated, unequal strides
    (4, 4, 8, 8, 3, 1, 1, 1, 4, "reflect"),  # depthwise, reflect padding
    (3, 4, 8, 8, 3, 1, 1, 1, 1, "reflect"),
    (3, 4, 8, 8, 3, 2, 1, 1, 1, "circular"),
]


def definition(conv: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """||dL/dW||^2 per sample with L = <conv(a_n), g_n>, one sample at a time in float64. -> (B,)"""
    c = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=False,
        padding_mode=conv.padding_mode,
    ).double()
    c.weight.data.copy_(conv.weight.data)
    out = []
    for i in range(a.shape[0]):
        (gw,) = torch.autograd.grad((c(a[i : i + 1].double()) * g[i : i + 1].double()).sum(), c.weight)
        out.append(gw.pow(2).sum())
    return torch.stack(out)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: "-".join(map(str, g)))
@pytest.mark.parametrize("path", PATHS)
def test_each_path_equals_the_definition(geom, path):
    C, P, H, W, k, s, p, d, groups, mode = geom
    torch.manual_seed(0)
    conv = nn.Conv2d(C, P, k, s, p, d, groups, bias=False, padding_mode=mode)
    a = torch.randn(3, C, H, W)
    g = torch.randn_like(conv(a))
    if groups != 1 and path in ("ghost", "unfold"):
        with pytest.raises(ValueError, match="groups=1"):
            conv_weight_sq(conv, a, g, 1 << 20, path)
        return
    if groups != C and path == "depthwise":
        with pytest.raises(ValueError, match="one input channel per filter"):
            conv_weight_sq(conv, a, g, 1 << 20, path)
        return
    fast = conv_weight_sq(conv, a, g, 1 << 20, path)
    assert fast.shape == (3,)
    assert torch.allclose(fast.double(), definition(conv, a, g), rtol=1e-5, atol=0)


@pytest.mark.parametrize("groups", [1, 8])
def test_memory_bound_slices_the_batch_without_changing_results(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=False)
    a, g = torch.randn(7, 8, 6, 6), torch.randn(7, 16, 6, 6)
    ref = definition(conv, a, g)
    paths = ("grouped", "depthwise") if groups > 1 else ("ghost", "grouped", "unfold")
    for path in paths:
        tiny = conv_weight_sq(conv, a, g, 1, path)  # one sample per slice
        assert torch.allclose(tiny.double(), ref, rtol=1e-5), path


def test_unknown_path_is_refused():
    conv = nn.Conv2d(2, 2, 3)
    with pytest.raises(ValueError, match="path must be one of"):
        conv_weight_sq(conv, torch.randn(1, 2, 5, 5), torch.randn(1, 2, 3, 3), 1 << 20, "fft")


def test_rule_takes_the_ghost_norm_where_it_is_cheaper():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    # ResNet-18 at 32x32: 512 channels at 4x4 and 256 at 8x8 -> ghost; 64 channels at 32x32 -> materialise
    assert choose_path(1, 512, 16, 512, 16, 512 * 9, cpu) == "ghost"
    assert choose_path(1, 256, 64, 256, 64, 256 * 9, cpu) == "ghost"
    assert choose_path(1, 64, 1024, 64, 1024, 64 * 9, cpu) == "grouped"
    assert choose_path(1, 64, 1024, 64, 1024, 64 * 9, gpu) == "unfold"
    assert choose_path(2, 512, 16, 512, 16, 256 * 9, gpu) == "grouped"  # no ghost or unfold with groups
    assert choose_path(2, 512, 16, 512, 16, 256 * 9, cpu) == "grouped"
    # depthwise (groups == input channels): the forward convolution on a CPU only
    assert choose_path(96, 96, 3136, 96, 3136, 49, cpu) == "depthwise"
    assert choose_path(96, 96, 3136, 96, 3136, 49, gpu) == "grouped"
    assert choose_path(1, 1, 784, 16, 784, 9, cpu) == "grouped"  # a one-channel stem is not depthwise


def test_depthwise_layer_of_a_channels_last_input():
    """ConvNeXt's blocks hand their depthwise convolution a channels-last-strided input."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 7, padding=3, groups=6, bias=False)
    a = torch.randn(3, 6, 9, 9).contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 9, 9, 6).permute(0, 3, 1, 2)
    assert path_for(conv, a, g) == "depthwise"
    assert torch.allclose(conv_weight_sq(conv, a, g, 1 << 20).double(), definition(conv, a, g), rtol=1e-5)


def test_rule_counts_the_positions_a_strided_1x1_convolution_reads():
    # 128 -> 256 channels, 1x1, stride 2 on 16x16: it reads 64 positions (ghost cheaper); over all
    # 256 input positions the ghost norm would cost more than materialising
    conv = nn.Conv2d(128, 256, 1, 2, bias=False)
    a, g = torch.randn(2, 128, 16, 16), torch.randn(2, 256, 8, 8)
    assert path_for(conv, a, g) == "ghost"
    assert choose_path(1, 128, 256, 256, 64, 128, torch.device("cpu")) == "grouped"


class WithOwnForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3))), []


def test_batchnorm_forward_is_restored_and_the_output_unchanged():
    torch.manual_seed(0)
    model = WithOwnForward()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(4, 2, 5, 5)
    before = model(x)[0]
    per_sample_sq_norms(model, x, lambda m, v: entropy(m(v)[0]))
    assert "forward" not in vars(model.bn)
    assert torch.equal(model(x)[0], before)

    def boom(m, v):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        per_sample_sq_norms(model, x, boom)
    assert "forward" not in vars(model.bn)
    assert not model.bn._forward_hooks and not model.conv._forward_hooks
