"""Batch normalisation by hand: finite differences, torch autograd in float64, running statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.numpy_nn import layers as nn
from course_utils.numpy_nn.gradcheck import numerical_gradient_array, rel_error

TORCH_TOL = 1e-10
FD_TOL = 1e-7

FUNCTIONS = {"1d": (nn.batchnorm_forward, nn.batchnorm_backward, (8, 5)),
             "2d": (nn.spatial_batchnorm_forward, nn.spatial_batchnorm_backward, (4, 3, 5, 6))}


def inputs(shape, seed=0):
    """An input far from standardised (mean 3, std 2.5), and gamma, beta away from 1 and 0."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = 3.0 + 2.5 * rng.normal(size=shape)
    return x, rng.normal(1.0, 0.5, size=channels), rng.normal(0.0, 0.5, size=channels), rng


def naive_backward(dout, cache):
    """The wrong gradient a first attempt gives: treating the batch mean and variance as constants."""
    xhat, gamma, inv_std, _ = cache
    return dout * gamma * inv_std


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("train", [True, False])
def test_backward_matches_finite_differences(kind, train):
    forward, backward, shape = FUNCTIONS[kind]
    x, gamma, beta, rng = inputs(shape)
    c = shape[1]
    stats = (rng.normal(size=c), rng.uniform(0.5, 2.0, size=c))

    def f():  # fresh copies: the running statistics must not drift while differencing
        return forward(x, gamma, beta, stats[0].copy(), stats[1].copy(), train)[0]

    out, cache = forward(x, gamma, beta, stats[0].copy(), stats[1].copy(), train)
    dout = rng.normal(size=out.shape)
    dx, dgamma, dbeta = backward(dout, cache)
    for array, analytic in ((x, dx), (gamma, dgamma), (beta, dbeta)):
        numeric = numerical_gradient_array(f, array, dout)
        assert analytic.shape == array.shape
        assert rel_error(analytic, numeric) < FD_TOL


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_naive_backward_is_wrong_in_training_mode(kind):
    """Ignoring how the batch mean and variance depend on x gives a gradient far off; the
    compact formula's gradient sums to zero over the batch and is orthogonal to xhat."""
    forward, backward, shape = FUNCTIONS[kind]
    x, gamma, beta, rng = inputs(shape, seed=1)
    c = shape[1]
    out, cache = forward(x, gamma, beta, np.zeros(c), np.ones(c), True)
    dout = rng.normal(size=out.shape)
    dx = backward(dout, cache)[0]
    numeric = numerical_gradient_array(lambda: forward(x, gamma, beta, np.zeros(c), np.ones(c), True)[0], x, dout)
    rows = nn._channels_last(dout) if kind == "2d" else dout
    naive = naive_backward(rows, cache[0] if kind == "2d" else cache)
    naive = nn._channels_first(naive, shape) if kind == "2d" else naive
    assert rel_error(naive, numeric) > 1e-2
    assert rel_error(dx, numeric) < FD_TOL
    # Shifting a whole feature changes nothing, so dx sums to 0 over it; with eps = 0, scaling
    # a whole feature changes nothing either, so dx is orthogonal to the centred x.
    axes = (0, 2, 3) if kind == "2d" else (0,)
    assert np.allclose(dx.sum(axis=axes), 0.0, atol=1e-12)
    dx0 = backward(dout, forward(x, gamma, beta, np.zeros(c), np.ones(c), True, eps=0.0)[1])[0]
    assert np.allclose((dx0 * (x - x.mean(axis=axes, keepdims=True))).sum(axis=axes), 0.0, atol=1e-12)


def torch_pair(kind, channels, momentum=0.1):
    layer = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(channels, momentum=momentum)
    return layer.double(), (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(channels, momentum=momentum)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_equals_torch_batchnorm_forward_backward_and_running_stats(kind):
    """Five training steps with new gamma, beta and batches each time, then evaluation mode:
    outputs, every gradient and the running statistics (PyTorch's unbiased running variance)
    agree with torch autograd to 1e-10 in float64."""
    _, _, shape = FUNCTIONS[kind]
    theirs, ours = torch_pair(kind, shape[1], momentum=0.3)
    rng = np.random.default_rng(2)
    for step in range(5):
        x, gamma, beta, _ = inputs(shape, seed=10 + step)
        ours.params["gamma"][...], ours.params["beta"][...] = gamma, beta
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(gamma))
            theirs.bias.copy_(torch.from_numpy(beta))
        theirs.zero_grad()
        xt = torch.from_numpy(x).requires_grad_(True)
        out_t = theirs.train()(xt)
        out = ours.forward(x)
        dout = rng.normal(size=out.shape)
        out_t.backward(torch.from_numpy(dout))
        dx = ours.backward(dout)
        assert np.max(np.abs(out - out_t.detach().numpy())) < TORCH_TOL
        assert np.max(np.abs(dx - xt.grad.numpy())) < TORCH_TOL
        assert np.max(np.abs(ours.grads["gamma"] - theirs.weight.grad.numpy())) < TORCH_TOL
        assert np.max(np.abs(ours.grads["beta"] - theirs.bias.grad.numpy())) < TORCH_TOL
        assert np.max(np.abs(ours.running_mean - theirs.running_mean.numpy())) < TORCH_TOL
        assert np.max(np.abs(ours.running_var - theirs.running_var.numpy())) < TORCH_TOL
    x, _, _, _ = inputs(shape, seed=99)
    ours.training = False
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t = theirs.eval()(xt)
    dout = rng.normal(size=out_t.shape)
    out_t.backward(torch.from_numpy(dout))
    assert np.max(np.abs(ours.forward(x) - out_t.detach().numpy())) < TORCH_TOL
    assert np.max(np.abs(ours.backward(dout) - xt.grad.numpy())) < TORCH_TOL


def test_running_variance_is_the_unbiased_one():
    x, gamma, beta, _ = inputs((6, 3))
    mean, var = np.zeros(3), np.ones(3)
    nn.batchnorm_forward(x, gamma, beta, mean, var, train=True, momentum=1.0)
    assert np.allclose(mean, x.mean(axis=0))
    assert np.allclose(var, x.var(axis=0, ddof=1))
    assert not np.allclose(var, x.var(axis=0))


def test_training_mode_standardises_each_channel_and_eval_mode_does_not_depend_on_the_batch():
    x, _, _, _ = inputs((16, 3, 4, 4))
    layer = nn.BatchNorm2d(3)
    out = layer.forward(x)
    assert np.allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    assert np.allclose(out.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    layer.training = False
    alone, in_batch = layer.forward(x[:1]), layer.forward(x)[:1]
    assert np.array_equal(alone, in_batch)
    layer.training = True
    assert not np.allclose(layer.forward(x[:2])[:1], in_batch)


def test_training_mode_refuses_a_batch_of_one():
    with pytest.raises(ValueError, match="at least 2 values"):
        nn.BatchNorm1d(3).forward(np.ones((1, 3)))


def test_mlp_with_batch_norm_passes_gradient_check_and_switches_mode():
    rng = np.random.default_rng(0)
    model = nn.mlp([6, 5, 4, 3], rng=rng, batch_norm=True)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    x, y = rng.normal(size=(10, 6)), rng.integers(0, 3, size=10)

    def loss():
        return nn.softmax_cross_entropy(model.forward(x), y)[0]

    _, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    for layer, following in zip(model.layers, model.layers[1:] + [None]):
        for name, value in layer.params.items():
            numeric = numerical_gradient_array(lambda: np.array(loss()), value, np.array(1.0))
            if name == "b" and isinstance(following, nn.BatchNorm1d):
                # a bias before batch norm is subtracted again with the batch mean: no gradient
                assert np.max(np.abs(layer.grads[name])) < 1e-12 and np.max(np.abs(numeric)) < 1e-9
            else:
                assert rel_error(layer.grads[name], numeric) < 1e-6
    model.eval()
    assert not any(layer.training for layer in model.layers)
