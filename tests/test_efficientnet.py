"""Tests of course_utils.models.efficientnet: hand-written blocks equal torchvision's; the scaling table."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models.efficientnet import MBConv as TorchMBConv
from torchvision.models.efficientnet import MBConvConfig
from torchvision.ops.misc import SqueezeExcitation as TorchSE

from course_utils.models import count_parameters, efficientnet as E


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics, so eval-mode outputs test them too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_squeeze_excitation_equals_torchvision():
    torch.manual_seed(0)
    theirs = TorchSE(24, 6, activation=nn.SiLU)
    ours = E.SqueezeExcitation(24, 6)
    E.copy_weights_in_order(theirs, ours)
    x = torch.randn(2, 24, 7, 7)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    gate = ours(torch.ones(1, 24, 3, 3))
    assert ((gate > 0) & (gate < 1)).all()  # a gate in (0, 1) times ones


@pytest.mark.parametrize("expand, kernel, stride, cin, cout", [
    (1, 3, 1, 32, 16),   # B0's first block: no expansion
    (6, 3, 2, 16, 24),   # strided: no skip
    (6, 5, 1, 40, 40),   # skip connection
])
def test_mbconv_equals_torchvision(expand, kernel, stride, cin, cout):
    torch.manual_seed(0)
    cnf = MBConvConfig(expand, kernel, stride, cin, cout, num_layers=1, width_mult=1.0, depth_mult=1.0)
    theirs = TorchMBConv(cnf, stochastic_depth_prob=0.0, norm_layer=nn.BatchNorm2d)
    ours = E.MBConv(cin, cout, expand, kernel, stride)
    assert count_parameters(ours) == count_parameters(theirs)
    randomise_batchnorm(theirs)
    E.copy_weights_in_order(theirs, ours)
    theirs.eval(), ours.eval()
    x = torch.randn(2, cin, 16, 16)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (2, cout, 16 // stride, 16 // stride)
    assert torch.allclose(got, expected, atol=1e-5)
    assert ours.use_skip == (stride == 1 and cin == cout)


def test_mbconv_stochastic_depth_only_in_training():
    torch.manual_seed(0)
    block = E.MBConv(8, 8, 4, 3, 1, drop_prob=0.5).eval()
    x = torch.randn(64, 8, 5, 5)
    with torch.no_grad():
        assert torch.equal(block(x), block(x))  # deterministic in eval mode
        block.train()
        dropped = (block(x) - x).flatten(1).abs().sum(1) == 0  # branch dropped: output is the input
    assert 10 < dropped.sum() < 54


def test_compound_scaling():
    assert math.isclose(E.ALPHA * E.BETA ** 2 * E.GAMMA ** 2, 1.92, abs_tol=0.01)
    s = E.compound_scale(2)
    assert math.isclose(s["depth"], 1.44) and math.isclose(s["width"], 1.21)
    assert math.isclose(s["flops"], (1.2 * 1.21 * 1.3225) ** 2)
    assert E.compound_scale(0) == {"depth": 1.0, "width": 1.0, "resolution": 1.0, "flops": 1.0}


def test_rounding_reproduces_torchvision_b7():
    model = E.torchvision_efficientnet("b7")
    s = E.EFFICIENTNETS["b7"]
    assert model.features[0][0].out_channels == E.round_filters(32, s.width) == 64
    assert len(model.features[2]) == E.round_repeats(2, s.depth) == 7
    assert model.features[7][0].block[-1][0].out_channels == E.round_filters(320, s.width)


def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    # 8×16×16 outputs × 3·9, then 8×16×16 × 1·9 (depthwise), then 4 × 8
    assert E.count_macs(model, 32) == 8 * 16 * 16 * 27 + 8 * 16 * 16 * 9 + 4 * 8


def test_activation_bytes_counts_saved_tensors_not_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    # conv saves its input (3×8×8); ReLU saves its output (4×8×8); the weight is not counted
    assert E.activation_bytes(model, 8, batch=2) == 4 * 2 * (3 * 64 + 4 * 64)


def test_scaling_table_b0():
    (row,) = E.scaling_table(batch=32, names=("b0",), also_at=None)
    assert row["model"] == "B0" and row["resolution"] == 224
    assert round(row["params_M"], 2) == 5.29
    assert 0.38 < row["GMACs"] < 0.41  # the paper: 0.39 B FLOPs (multiply-adds)
    assert 1.5 < row["act_gb"] < 4.0   # a few GB at batch 32: the backward pass needs them all
    assert row["train_gb"] > row["act_gb"]


def test_activation_memory_grows_with_the_family():
    rows = E.scaling_table(batch=32, names=("b0", "b3", "b7"), also_at=224)
    act = [r["act_gb"] for r in rows]
    assert act[0] < act[1] < act[2] and act[2] > 16  # B7 at 600 px, batch 32: beyond a 16 GB GPU
    assert rows[2]["act_gb_224"] < rows[2]["act_gb"]
    assert rows[2]["GMACs"] > 30 * rows[0]["GMACs"]
