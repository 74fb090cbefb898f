"""FGSM (course_utils.explain.adversarial): respects ε, raises the loss, leaves the model alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import explain
from course_utils.models import SmallCNN

MEAN, STD = 0.2, 0.25


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, n_classes=4, widths=(4, 8), hidden=8)


def pixels_to_inputs(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - MEAN) / STD


def test_every_pixel_moves_by_at_most_epsilon_and_most_by_exactly_epsilon():
    model = small_cnn()
    torch.manual_seed(1)
    x = pixels_to_inputs(torch.rand(3, 1, 24, 24) * 0.8 + 0.1)        # pixels in [0.1, 0.9]
    epsilon = 2 / 255
    result = explain.fgsm(model, x, [0, 1, 2], epsilon, MEAN, STD)
    change = result.pixel_change(STD).abs()
    assert result.perturbed.shape == x.shape and result.perturbed_probs.shape == (3, 4)
    assert change.max().item() == pytest.approx(epsilon, rel=1e-5)
    assert (change <= epsilon * (1 + 1e-5)).all()
    assert (change > epsilon * 0.99).float().mean() > 0.9          # no clipping here: nearly all move by ε
    assert result.step == pytest.approx(epsilon / STD)


def test_pixels_stay_in_range():
    model = small_cnn()
    x = pixels_to_inputs(torch.zeros(2, 1, 24, 24))                   # all black: can only get brighter
    result = explain.fgsm(model, x, 0, 0.1, MEAN, STD)
    pixels = result.perturbed * STD + MEAN
    assert pixels.min() >= -1e-6 and pixels.max() <= 0.1 + 1e-6


def test_raises_the_loss_to_first_order():
    model = small_cnn().eval()
    torch.manual_seed(2)
    x = pixels_to_inputs(torch.rand(4, 1, 24, 24) * 0.5 + 0.25)
    labels = torch.tensor([0, 1, 2, 3])
    gradient = explain.input_gradient(model, x, labels)
    loss = F.cross_entropy(model(x), labels, reduction="sum").item()
    for epsilon in (1e-4, 1e-3):
        result = explain.fgsm(model, x, labels, epsilon, MEAN, STD)
        gained = F.cross_entropy(model(result.perturbed), labels, reduction="sum").item() - loss
        predicted = result.step * gradient.abs().sum().item()               # ε·‖∇ₓL‖₁ in input units
        assert gained > 0
        assert gained == pytest.approx(predicted, rel=0.05)


def test_a_linear_model_is_fooled_by_a_small_step():
    # Goodfellow et al.'s argument: in many dimensions, tiny steps add up along w
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2))
    x = torch.rand(1, 1, 32, 32) * 0.5 + 0.25
    label = int(model(x).argmax())
    margin = (model(x)[0, label] - model(x)[0, 1 - label]).item()
    w = model[1].weight[label] - model[1].weight[1 - label]
    needed = margin / w.abs().sum().item()                               # ε that closes the margin
    result = explain.fgsm(model, x, label, 1.01 * needed)
    assert result.flipped.item()
    assert not explain.fgsm(model, x, label, 0.99 * needed).flipped.item()


def test_leaves_parameters_and_mode_untouched():
    model = small_cnn().train()
    x = torch.randn(2, 1, 24, 24)
    explain.fgsm(model, x, [0, 1], 0.01)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("args, message", [
    ((torch.ones(2, 1, 24, 24), [0, 1, 2], 0.01), "3 labels for a batch of 2"),
    ((torch.ones(2, 1, 24, 24), [0, 1], -0.01), "epsilon .* must be >= 0"),
    ((torch.ones(1, 24, 24), [0], 0.01), r"\(N, C, H, W\)"),
])
def test_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        explain.fgsm(small_cnn(), *args)
