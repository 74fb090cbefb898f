"""Residual and plain blocks and networks (course_utils.models.resnet)."""

import math

import pytest
import torch
from torch import nn

from course_utils.models import count_parameters
from course_utils.models.resnet import (BasicBlock, PlainBlock, PlainNet, SmallResNet,
                                        layer_gradient_norms, main_path_convs, recalibrate_batch_norm)


def test_identity_block_keeps_shape_and_adds_its_input():
    torch.manual_seed(0)
    block = BasicBlock(8, 8, stride=1)
    assert not block.is_projection
    block.eval()
    x = torch.randn(2, 8, 12, 12)
    y = block(x)
    assert y.shape == x.shape
    # y = relu(F(x) + x), exactly
    assert torch.allclose(y, torch.relu(block.residual(x) + x))


def test_identity_block_with_zero_residual_passes_the_input_through():
    block = BasicBlock(4, 4, stride=1).eval()
    nn.init.zeros_(block.bn2.weight)  # F(x) = 0: the block must be the identity (after ReLU)
    x = torch.rand(3, 4, 6, 6)  # non-negative, as after a previous ReLU
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("in_ch, out_ch, stride", [(8, 16, 2), (8, 16, 1), (8, 8, 2)])
def test_projection_block_transforms_shape(in_ch, out_ch, stride):
    block = BasicBlock(in_ch, out_ch, stride=stride)
    assert block.is_projection
    conv = block.shortcut[0]
    assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride)
    assert isinstance(block.shortcut[1], nn.BatchNorm2d)
    y = block(torch.randn(2, in_ch, 12, 12))
    assert y.shape == (2, out_ch, 12 // stride, 12 // stride)


def test_plain_block_has_no_shortcut_and_matches_shapes():
    block = PlainBlock(8, 16, stride=2).eval()
    assert not hasattr(block, "shortcut")
    x = torch.randn(2, 8, 12, 12)
    y = block(x)
    assert y.shape == (2, 16, 6, 6)
    assert torch.allclose(y, torch.relu(block.residual(x)))


def test_blocks_without_batch_norm_use_biases():
    block = BasicBlock(4, 8, stride=2, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert block.conv1.bias is not None and block.shortcut[0].bias is not None


@pytest.mark.parametrize("cls", [SmallResNet, PlainNet])
def test_networks_output_logits_and_report_depth(cls):
    torch.manual_seed(0)
    net = cls(widths=(8, 16, 32), blocks=(1, 2, 1))
    assert net.depth == 2 + 2 * 4
    assert len(main_path_convs(net)) == net.depth - 1  # every layer but the linear head
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 4)
    assert net.features(torch.randn(3, 1, 32, 32)).shape == (3, 32, 4, 4)  # pool 2, then 2 stride-2 stages


def test_twins_differ_only_by_projection_shortcuts():
    res = SmallResNet(widths=(8, 16, 32), blocks=2)
    plain = PlainNet(widths=(8, 16, 32), blocks=2)
    projections = [m for m in res.modules() if isinstance(m, BasicBlock) and m.is_projection]
    assert len(projections) == 2  # one at the start of each later stage
    extra = sum(count_parameters(m.shortcut) for m in projections)
    assert count_parameters(res) == count_parameters(plain) + extra


def test_mismatched_blocks_and_widths_raise():
    with pytest.raises(ValueError):
        SmallResNet(widths=(8, 16), blocks=(1, 1, 1))


@pytest.mark.parametrize("cls", [SmallResNet, PlainNet])
def test_gradients_reach_the_first_layer(cls):
    torch.manual_seed(0)
    net = cls(widths=(8, 16), blocks=2)
    x, y = torch.randn(8, 1, 24, 24), torch.arange(8) % 4
    norms = layer_gradient_norms(net, x, y)
    assert len(norms) == net.depth - 1
    assert norms[0][0].startswith("stem")
    assert all(math.isfinite(g) and g > 0 for _, g in norms)
    assert all(p.grad is None for p in net.parameters())  # the helper leaves no gradients behind


def test_deep_plain_net_gradients_vanish_but_residual_ones_do_not():
    """The lesson's claim: 32 layers, no batch norm, PyTorch's default initialisation."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 32, 32), torch.arange(16) % 4
    first = {}
    for cls in (PlainNet, SmallResNet):
        torch.manual_seed(1)
        net = cls(widths=(8, 16, 32), blocks=5, batch_norm=False)
        assert net.depth == 32
        norms = [g for _, g in layer_gradient_norms(net, x, y)]
        first[cls.__name__] = norms[0]
        if cls is PlainNet:  # vanishing: shrinks by orders of magnitude towards the input
            assert norms[0] < 1e-6 * norms[-1]
        else:  # the identity path keeps the first layer's gradient comparable to the last's
            assert norms[0] > 1e-2 * norms[-1]
    assert first["SmallResNet"] > 1e6 * first["PlainNet"]


def test_recalibrate_batch_norm_sets_exact_statistics_and_keeps_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)).eval()
    net[1].running_mean.fill_(5.0)  # stale statistics, as after training on other images
    weights = [p.clone() for p in net.parameters()]
    x = torch.randn(8, 1, 6, 6) * 2 + 1
    loader = [(x[:4], None), (x[4:], None)]  # two equal batches
    out = recalibrate_batch_norm(net, loader)
    assert out is net and not net.training and net[1].momentum == 0.1
    with torch.no_grad():
        h = net[0](x)
    batch_means = torch.stack([h[:4].mean(dim=(0, 2, 3)), h[4:].mean(dim=(0, 2, 3))])
    batch_vars = torch.stack([h[:4].var(dim=(0, 2, 3)), h[4:].var(dim=(0, 2, 3))])  # unbiased, as BN keeps
    assert torch.allclose(net[1].running_mean, batch_means.mean(0), atol=1e-5)
    assert torch.allclose(net[1].running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)  # equal batches: the overall mean
    assert torch.allclose(net[1].running_var, batch_vars.mean(0), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
