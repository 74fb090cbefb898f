"""Occlusion sensitivity (course_utils.explain.occlusion) on hand-made models whose answer is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import explain
from course_utils.models import SmallCNN


class QuadrantModel(nn.Module):
    """Class 0's logit is ``w`` times the sum of the top-left quadrant; class 1's is 0.

    Only the top-left quadrant can matter, and the drop of hiding a window is known exactly.
    """

    def __init__(self, size: int = 16, w: float = 0.05):
        super().__init__()
        self.half, self.w = size // 2, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.w * x[:, :, :self.half, :self.half].sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_map_is_non_zero_only_in_the_quadrant_the_model_looks_at():
    model = QuadrantModel()
    x = torch.ones(2, 1, 16, 16)
    maps = explain.occlusion_map(model, x, targets=0, patch=4, stride=4, baseline=0.0)
    assert maps.shape == (2, 16, 16)
    s = torch.tensor(model.w * 64)
    expected = torch.sigmoid(s) - torch.sigmoid(s - model.w * 16)    # one 4×4 window hidden
    assert torch.allclose(maps[:, :8, :8], expected.expand(2, 8, 8), atol=1e-6)
    outside = maps.clone()
    outside[:, :8, :8] = 0
    assert outside.abs().max() == 0


def test_overlapping_windows_average_and_the_map_is_in_probability_units():
    model = QuadrantModel()
    x = torch.ones(1, 1, 16, 16)
    maps = explain.occlusion_map(model, x, targets=0, patch=4, stride=2)
    # pixels far from the quadrant: no window over them touches it
    assert maps[0, 12:, :].abs().max() == 0 and maps[0, :, 12:].abs().max() == 0
    assert maps[0, :6, :6].min() > 0
    # hiding evidence for class 1 (the other class) raises it: the map of class 1 is negative
    assert explain.occlusion_map(model, x, targets=1, patch=4, stride=4)[0, :8, :8].max() < 0


def test_batching_does_not_change_the_map_and_the_mode_is_restored():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, n_classes=4, widths=(4, 8), hidden=8).train()
    x = torch.randn(2, 1, 24, 24)
    one = explain.occlusion_map(model, x, patch=6, stride=3, batch_size=1)
    many = explain.occlusion_map(model, x, patch=6, stride=3, batch_size=200)
    assert torch.allclose(one, many, atol=1e-6)
    assert model.training
    # the default target is the predicted class (of the model in evaluation mode)
    predicted = model.eval()(x).argmax(1).tolist()
    assert torch.allclose(explain.occlusion_map(model, x, targets=predicted, patch=6, stride=3), one, atol=1e-6)


def test_window_starts_cover_every_pixel():
    assert explain.window_starts(10, 4, 4) == [0, 4, 6]
    assert explain.window_starts(16, 4, 4) == [0, 4, 8, 12]
    assert explain.window_starts(5, 5, 1) == [0]


def test_black_level_is_a_black_pixel_in_input_space():
    assert explain.black_level(0.5, 0.5) == -1.0
    assert explain.black_level(0.2, 0.1) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="std must be positive"):
        explain.black_level(0.5, 0.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch=17), "between 1 px and the image size"),
    (dict(patch=0), "between 1 px and the image size"),
    (dict(stride=0), "stride must be at least 1"),
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(targets=[0, 1, 0]), "3 targets for a batch of 2"),
])
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        explain.occlusion_map(QuadrantModel(), torch.ones(2, 1, 16, 16), **kwargs)


def test_refuses_an_image_without_its_batch_axis():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        explain.occlusion_map(QuadrantModel(), torch.ones(1, 16, 16))
