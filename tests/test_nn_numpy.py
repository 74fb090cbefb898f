"""The NumPy layers: gradient checks, agreement with torch autograd, dropout, init, XOR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.numpy_nn import layers as nn
from course_utils.numpy_nn.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from course_utils.numpy_nn.optim import Adam

TOL = 1e-6


def check_layer(forward, backward, x, params=(), seed=0):
    """Gradient-check ``L = sum(forward(x, *params) * dout)`` w.r.t. x and every param."""
    rng = np.random.default_rng(seed)
    out, cache = forward(x, *params)
    dout = rng.normal(size=out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for array, analytic in zip((x, *params), grads):
        numeric = numerical_gradient_array(lambda: forward(x, *params)[0], array, dout)
        assert analytic.shape == array.shape
        assert rel_error(analytic, numeric) < TOL


def away_from_zero(shape, rng):
    """Inputs at least 0.1 away from ReLU's kink, so that +-h never crosses it."""
    x = rng.normal(size=shape)
    return np.where(np.abs(x) < 0.1, 0.1 * np.sign(x) + 0.1 * (x == 0), x)


def test_linear_gradients():
    rng = np.random.default_rng(0)
    check_layer(nn.linear_forward, nn.linear_backward, rng.normal(size=(4, 5)),
                (rng.normal(size=(5, 3)), rng.normal(size=3)))


def test_linear_flattens_image_batches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4))
    W, b = rng.normal(size=(12, 5)), rng.normal(size=5)
    out, _ = nn.linear_forward(x, W, b)
    np.testing.assert_allclose(out, x.reshape(2, 12) @ W + b)
    check_layer(nn.linear_forward, nn.linear_backward, x, (W, b))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu"])
def test_activation_gradients(name):
    rng = np.random.default_rng(2)
    forward, backward = getattr(nn, f"{name}_forward"), getattr(nn, f"{name}_backward")
    check_layer(forward, backward, away_from_zero((5, 6), rng) * 2)


def test_dropout_gradient_with_fixed_mask():
    x = np.random.default_rng(3).normal(size=(6, 7))
    forward = lambda x: nn.dropout_forward(x, 0.4, True, np.random.default_rng(11))  # same mask each call
    check_layer(forward, nn.dropout_backward, x)


@pytest.mark.parametrize("name,torch_fn", [
    ("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
    ("gelu", lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
])
def test_activations_equal_torch(name, torch_fn):
    x = np.linspace(-40, 40, 801)
    out, _ = getattr(nn, f"{name}_forward")(x)
    np.testing.assert_allclose(out, torch_fn(torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_is_stable_and_normalised():
    z = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    p = nn.softmax(z)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p, torch.softmax(torch.from_numpy(z), dim=1).numpy(), rtol=1e-12)


def test_softmax_cross_entropy_gradient_and_value():
    rng = np.random.default_rng(4)
    logits, y = rng.normal(size=(7, 4)), rng.integers(0, 4, size=7)
    loss, dlogits = nn.softmax_cross_entropy(logits, y)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert abs(loss - expected) < 1e-12
    numeric = numerical_gradient(lambda: nn.softmax_cross_entropy(logits, y)[0], logits)
    assert rel_error(dlogits, numeric) < TOL


def test_mse_loss_gradient_and_value():
    rng = np.random.default_rng(5)
    pred, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss, dpred = nn.mse_loss(pred, target)
    assert abs(loss - torch.nn.functional.mse_loss(torch.from_numpy(pred), torch.from_numpy(target)).item()) < 1e-12
    assert rel_error(dpred, numerical_gradient(lambda: nn.mse_loss(pred, target)[0], pred)) < TOL


def three_layer_mlp(activation="tanh", seed=0):
    rng = np.random.default_rng(seed)
    act = nn.ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(6, 8, "xavier", rng), act(), nn.Linear(8, 5, "xavier", rng), act(),
                         nn.Linear(5, 3, "xavier", rng))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_mlp_loss_and_gradients_equal_torch_autograd(activation):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(10, 6)), rng.integers(0, 3, size=10)
    model = three_layer_mlp(activation)
    for params, _ in model.parameters():  # non-zero biases so that their gradients matter
        params["b"] += rng.normal(scale=0.1, size=params["b"].shape)
    loss, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
    dx = model.backward(dlogits)

    tparams = [{k: torch.tensor(v, requires_grad=True) for k, v in p.items()} for p, _ in model.parameters()]
    tx = torch.tensor(x, requires_grad=True)
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "gelu": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[activation]
    h = tx
    for i, p in enumerate(tparams):
        h = h @ p["W"] + p["b"]
        if i < len(tparams) - 1:
            h = act(h)
    tloss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y))
    tloss.backward()

    assert abs(loss - tloss.item()) < 1e-10
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-10)
    for (_, grads), tp in zip(model.parameters(), tparams):
        for k in ("W", "b"):
            np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=0, atol=1e-10)


def test_mlp_passes_numerical_gradient_check():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(5, 6)), rng.integers(0, 3, size=5)
    model = three_layer_mlp("tanh")
    loss_fn = lambda: nn.softmax_cross_entropy(model.forward(x), y)[0]
    model.backward(nn.softmax_cross_entropy(model.forward(x), y)[1])
    for params, grads in model.parameters():
        for k in params:
            assert rel_error(grads[k], numerical_gradient(loss_fn, params[k])) < TOL


def test_dropout_keeps_expected_activation_in_train_mode():
    p, n = 0.3, 200_000
    x = np.full((n, 1), 2.0)
    out, mask = nn.dropout_forward(x, p, train=True, rng=np.random.default_rng(0))
    kept = np.mean(out != 0)
    # binomial standard error sqrt(p(1-p)/n) ~ 0.001; allow five of them
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(out.mean() - 2.0) < 5 * 2.0 / (1 - p) * np.sqrt(p * (1 - p) / n)
    assert set(np.unique(out)) == {0.0, 2.0 / (1 - p)}


def test_dropout_is_identity_in_eval_mode():
    x = np.random.default_rng(8).normal(size=(4, 5))
    out, cache = nn.dropout_forward(x, 0.5, train=False, rng=np.random.default_rng(0))
    assert out is x and cache is None
    layer_model = nn.Sequential(nn.Dropout(0.5, np.random.default_rng(0)))
    np.testing.assert_array_equal(layer_model.eval().forward(x), x)
    assert not np.array_equal(layer_model.train().forward(x), x)
    with pytest.raises(ValueError):
        nn.dropout_forward(x, 1.0, True)


@pytest.mark.parametrize("method,expected_std", [
    ("zeros", 0.0), ("normal", 0.05), ("xavier", np.sqrt(2 / (400 + 200))), ("he", np.sqrt(2 / 400)),
])
def test_init_weights_have_the_stated_scale(method, expected_std):
    W = nn.init_weights(400, 200, method, np.random.default_rng(0), scale=0.05)
    assert W.shape == (400, 200) and W.dtype == np.float64
    assert abs(W.std() - expected_std) <= 0.02 * expected_std
    assert abs(W.mean()) <= 0.02 * expected_std
    with pytest.raises(ValueError):
        nn.init_weights(2, 2, "uniformish", np.random.default_rng(0))


def test_same_seed_gives_same_model():
    a, b = nn.mlp([4, 3, 2], rng=np.random.default_rng(1)), nn.mlp([4, 3, 2], rng=np.random.default_rng(1))
    for (pa, _), (pb, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa["W"], pb["W"])


def test_mlp_builder_and_parameters():
    model = nn.mlp([10, 7, 5, 3], activation="gelu", dropout=0.2, rng=np.random.default_rng(0))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Linear", "GELU", "Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert len(model.parameters()) == 3
    assert model.num_parameters() == 10 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    assert model.forward(np.zeros((2, 10))).shape == (2, 3)


XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


def test_xor_is_solved_from_a_fixed_seed():
    model = nn.Sequential(nn.Linear(2, 8, "xavier", np.random.default_rng(0)), nn.Tanh(),
                          nn.Linear(8, 2, "xavier", np.random.default_rng(1)))
    opt = Adam(model, lr=0.05)
    for _ in range(300):
        loss, dlogits = nn.softmax_cross_entropy(model.forward(XOR_X), XOR_Y)
        model.backward(dlogits)
        opt.step()
    assert nn.accuracy(model.forward(XOR_X), XOR_Y) == 1.0
    assert loss < 0.05
