"""The NumPy optimisers follow torch.optim's trajectories step for step (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.numpy_nn import layers as nn
from course_utils.numpy_nn.optim import SGD, Adam, Momentum, RMSProp

STEPS = 20

# (ours, kwargs for ours, torch class, kwargs for torch): the documented mapping
CASES = {
    "sgd": (SGD, dict(lr=0.1), torch.optim.SGD, dict(lr=0.1)),
    "sgd_wd": (SGD, dict(lr=0.1, weight_decay=0.01), torch.optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    "momentum": (Momentum, dict(lr=0.05, beta=0.9), torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    "momentum_wd": (Momentum, dict(lr=0.05, beta=0.8, weight_decay=0.1), torch.optim.SGD,
                    dict(lr=0.05, momentum=0.8, weight_decay=0.1)),
    "rmsprop": (RMSProp, dict(lr=0.01, beta=0.99, eps=1e-8), torch.optim.RMSprop, dict(lr=0.01, alpha=0.99, eps=1e-8)),
    "rmsprop_wd": (RMSProp, dict(lr=0.01, beta=0.9, eps=1e-6, weight_decay=0.05), torch.optim.RMSprop,
                   dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05)),
    "adam": (Adam, dict(lr=0.01), torch.optim.Adam, dict(lr=0.01)),
    "adam_wd": (Adam, dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.01), torch.optim.Adam,
                dict(lr=0.02, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trajectory_matches_torch_optim(case):
    ours_cls, ours_kw, torch_cls, torch_kw = CASES[case]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)), rng.integers(0, 3, size=16)
    model = nn.Sequential(nn.Linear(5, 7, "he", rng), nn.Tanh(), nn.Linear(7, 3, "he", rng))
    tparams = [torch.tensor(a, requires_grad=True) for p, _ in model.parameters() for a in p.values()]
    loss0 = nn.softmax_cross_entropy(model.forward(x), y)[0]
    opt = ours_cls(model, **ours_kw)
    topt = torch_cls(tparams, **torch_kw)

    for _ in range(STEPS):
        loss, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits)
        opt.step()

        topt.zero_grad()
        W1, b1, W2, b2 = tparams
        tloss = torch.nn.functional.cross_entropy(torch.tanh(torch.from_numpy(x) @ W1 + b1) @ W2 + b2,
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) < 1e-10
        ours = [a for p, _ in model.parameters() for a in p.values()]
        for a, t in zip(ours, tparams):
            np.testing.assert_allclose(a, t.detach().numpy(), rtol=0, atol=1e-10)
    # and the trajectory went downhill
    assert nn.softmax_cross_entropy(model.forward(x), y)[0] < loss0


def test_optimizers_accept_param_pairs_and_update_in_place():
    w = np.array([1.0, -2.0])
    params, grads = {"w": w}, {"w": np.array([0.5, 0.5])}
    SGD([(params, grads)], lr=0.1).step()
    assert params["w"] is w  # in place: the layer keeps its array
    np.testing.assert_allclose(w, [0.95, -2.05])


def test_adam_first_step_is_lr_times_sign():
    # bias correction makes the very first Adam step ~ lr * sign(g), whatever the scale of g
    for scale in (1e-2, 1.0, 1e4):  # (eps = 1e-8 matters only for much smaller gradients)
        params, grads = {"w": np.zeros(3)}, {"w": scale * np.array([1.0, -2.0, 3.0])}
        Adam([(params, grads)], lr=0.01).step()
        np.testing.assert_allclose(params["w"], [-0.01, 0.01, -0.01], rtol=1e-5)


def test_momentum_reaches_the_minimum_of_an_ill_conditioned_quadratic_faster():
    def run(opt_cls, **kw):
        params = {"w": np.array([1.0, 1.0])}
        grads = {"w": np.zeros(2)}
        opt = opt_cls([(params, grads)], **kw)
        for step in range(1, 501):
            grads["w"] = np.array([1.0, 100.0]) * params["w"]  # f = (w0^2 + 100 w1^2) / 2
            opt.step()
            if np.linalg.norm(params["w"]) < 1e-3:
                return step
        return 10**9
    assert run(Momentum, lr=0.01, beta=0.9) < run(SGD, lr=0.01)


def test_invalid_learning_rate():
    with pytest.raises(ValueError):
        SGD([({}, {})], lr=0.0)
