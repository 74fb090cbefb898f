"""Deletion and insertion curves (course_utils.explain.deletion): a perfect ranking beats random."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import explain


class CornerModel(nn.Module):
    """Class 0's logit rises with the energy (sum of squares) of the top-left 8×8 corner of a
    32×32 image: only the corner matters, and blurring a sharp pattern there lowers it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 0.5 * x[:, :, :8, :8].pow(2).sum(dim=(1, 2, 3)) - 12.0
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def checkered_corner(n: int = 2) -> torch.Tensor:
    """Black images with a sharp 0/1 checkerboard in the corner: class 0, but not once blurred."""
    x = torch.zeros(n, 1, 32, 32)
    x[:, :, :8, :8] = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 == 0
    return x


def corner_map(n: int = 2) -> torch.Tensor:
    saliency = torch.zeros(n, 32, 32)
    saliency[:, :8, :8] = 1.0
    return saliency


def test_curve_ends_are_the_image_and_the_baseline():
    model = CornerModel()
    x = torch.ones(2, 1, 32, 32)
    curves = explain.deletion_curves(model, x, corner_map(), targets=0, steps=16)
    assert curves.shape == (2, 17)
    assert torch.allclose(curves[:, 0], torch.sigmoid(torch.tensor(0.5 * 64 - 12.0)))
    assert torch.allclose(curves[:, -1], torch.sigmoid(torch.tensor(-12.0)))


def test_a_perfect_ranking_beats_random_in_deletion_and_insertion():
    model = CornerModel()
    x = torch.ones(2, 1, 32, 32)
    perfect, noise = corner_map(), explain.random_saliency((2, 32, 32), seed=0)
    deletion = {name: explain.area_under_curve(explain.deletion_curves(model, x, m, targets=0, steps=32))
                for name, m in [("perfect", perfect), ("random", noise)]}
    # the corner is 1/16 of the pixels: deleting it first ends the evidence after 1/16 of the curve
    assert (deletion["perfect"] < deletion["random"] - 0.2).all()
    x = checkered_corner()
    insertion = {name: explain.area_under_curve(explain.insertion_curves(model, x, m, targets=0, sigma=2.0))
                 for name, m in [("perfect", perfect), ("random", noise)]}
    assert (insertion["perfect"] > insertion["random"] + 0.2).all()


def test_default_target_is_the_predicted_class_of_the_image():
    model = CornerModel()
    x = checkered_corner(1)
    assert int(model(x).argmax()) == 0 and int(model(explain.blurred(x, 2.0)).argmax()) == 1
    default = explain.insertion_curves(model, x, corner_map(1), sigma=2.0)
    assert torch.allclose(default, explain.insertion_curves(model, x, corner_map(1), targets=0, sigma=2.0))


def test_pixel_ranking_puts_the_largest_first_and_breaks_ties_by_seed():
    saliency = torch.tensor([[[0.1, 0.9], [0.5, 0.5]]])
    places = explain.pixel_ranking(saliency, seed=0)
    assert places[0, 1] == 0 and places[0, 0] == 3
    assert sorted(places[0].tolist()) == [0, 1, 2, 3]
    flat = torch.zeros(1, 8, 8)
    orders = {tuple(explain.pixel_ranking(flat, seed=s)[0].tolist()) for s in range(5)}
    assert len(orders) > 1                                             # ties are not raster order
    assert torch.equal(explain.pixel_ranking(flat, seed=3), explain.pixel_ranking(flat, seed=3))


def test_area_under_curve():
    curves = torch.stack([torch.full((5,), 0.5), torch.linspace(1, 0, 5)])
    assert torch.allclose(explain.area_under_curve(curves), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="points >= 2"):
        explain.area_under_curve(torch.ones(3, 1))


@pytest.mark.parametrize("saliency, kwargs, message", [
    (torch.zeros(2, 16, 16), {}, "one map per image"),
    (torch.zeros(3, 32, 32), {}, "one map per image"),
    (torch.zeros(2, 32, 32), dict(steps=0), "steps must be at least 1"),
])
def test_clear_errors(saliency, kwargs, message):
    with pytest.raises(ValueError, match=message):
        explain.deletion_curves(CornerModel(), torch.ones(2, 1, 32, 32), saliency, **kwargs)
