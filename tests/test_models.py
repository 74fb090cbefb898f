"""SmallCNN and VGG blocks, their parameter count and receptive field, feature-map hooks and their plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_utils.models import SmallCNN, conv_block, count_parameters, feature_maps, receptive_field, vgg_block
from course_utils.widgets.plots import plot_feature_maps, show_predictions


def test_small_cnn_shapes_and_any_input_size():
    model = SmallCNN().eval()
    for size in (96, 64, 160):
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 4)
    rgb = SmallCNN(in_channels=3, n_classes=2, widths=(8, 16), hidden=0)
    assert rgb(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


def test_parameter_count_matches_the_formula():
    # conv k×k without bias: k²·c_in·c_out; batch norm: 2·c_out; linear: in·out + out
    widths, hidden = (32, 64, 128, 256, 256), 128
    expected, c_in = 0, 1
    for c_out in widths:
        expected += 9 * c_in * c_out + 2 * c_out
        c_in = c_out
    expected += 256 * hidden + hidden + hidden * 4 + 4
    assert count_parameters(SmallCNN(widths=widths, hidden=hidden)) == expected
    frozen = SmallCNN()
    for p in frozen.features.parameters():
        p.requires_grad_(False)
    assert count_parameters(frozen) == 256 * hidden + hidden + hidden * 4 + 4
    assert count_parameters(frozen, trainable_only=False) == expected


def test_receptive_field_by_hand():
    # each block: 3×3 conv (stride 1) then 2×2 max pool (stride 2): r += 2j, then r += j, j *= 2
    rows = receptive_field(SmallCNN())
    assert [r for _, r, _ in rows] == [3, 4, 8, 10, 18, 22, 38, 46, 78, 94]
    assert rows[-1][2] == 32
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 5, stride=2), nn.Conv2d(1, 1, 3))) == [
        ("0", 5, 2), ("1", 9, 2)]


def test_feature_maps_hook_is_removed_and_mode_restored():
    torch.manual_seed(0)
    model = SmallCNN()
    model.train()
    x = torch.randn(1, 1, 96, 96)
    fm = feature_maps(model, model.features[1], x)
    assert fm.shape == (1, 64, 24, 24)
    assert model.training  # left as it was
    assert all(not block._forward_hooks for block in model.modules())
    model.eval()
    expected = model.features[1](model.features[0](x))
    assert torch.allclose(fm, expected)


def test_conv_block_halves_the_image():
    assert conv_block(1, 8)(torch.zeros(1, 1, 10, 10)).shape == (1, 8, 5, 5)


@pytest.mark.parametrize("convs", [1, 2, 3])
def test_vgg_block_stacks_see_the_field_of_one_large_kernel_with_fewer_weights(convs):
    """n stacked 3x3 convolutions: receptive field 2n + 1, n*9*C^2 weights, and the gradient of
    one output pixel reaches exactly a (2n + 1) x (2n + 1) square of the input."""
    torch.manual_seed(0)
    c = 4
    block = vgg_block(c, c, convs).eval()
    conv_rows = [r for name, r, _ in receptive_field(block) if isinstance(block.get_submodule(name), nn.Conv2d)]
    assert len(conv_rows) == convs and conv_rows[-1] == 2 * convs + 1
    weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))
    assert weights == convs * 9 * c * c
    assert sum(isinstance(m, nn.ReLU) for m in block) == convs
    x = torch.randn(1, c, 15, 15, requires_grad=True)
    block[:-1](x)[0, :, 7, 7].sum().backward()          # before the pool: one output position
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0)).unbind(1)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (2 * convs + 1, 2 * convs + 1)


def test_vgg_block_without_batch_norm_is_the_original_and_halves_the_image():
    block = vgg_block(3, 8, 2, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert all(m.bias is not None for m in block.modules() if isinstance(m, nn.Conv2d))
    assert count_parameters(block) == 3 * 8 * 9 + 8 + 8 * 8 * 9 + 8
    assert block(torch.zeros(2, 3, 10, 10)).shape == (2, 8, 5, 5)
    with pytest.raises(ValueError, match="at least one convolution"):
        vgg_block(3, 8, 0)


def test_plots_draw_the_expected_panels():
    fig = plot_feature_maps(torch.rand(1, 20, 6, 6), n=16, ncols=8, title="block 1")
    assert sum(ax.has_data() for ax in fig.axes) == 16
    plt.close(fig)
    fig = show_predictions(np.zeros((3, 8, 8)), [0, 1, 2], [0, 2, 2], ("a", "b", "c"))
    colors = [ax.title.get_color() for ax in fig.axes[:3]]
    assert colors == ["tab:green", "tab:red", "tab:green"]
    plt.close(fig)

