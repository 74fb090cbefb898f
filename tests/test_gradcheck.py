"""Numerical gradients (course_utils.numpy_nn.gradcheck) on cases whose gradient is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.numpy_nn.gradcheck import numerical_gradient, numerical_gradient_array, rel_error


def test_numerical_gradient_of_a_quadratic_and_x_is_restored():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = x.copy()
    grad = numerical_gradient(lambda: float(np.sum(x ** 2)), x)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-9)
    np.testing.assert_array_equal(x, before)


def test_array_form_is_the_chain_rule_with_the_upstream_gradient():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    dout = rng.normal(size=(3, 2))
    # out = tanh(x @ w): dL/dx = (dout * (1 - out^2)) @ w.T, here from PyTorch's autograd
    xt = torch.tensor(x, requires_grad=True)
    torch.tanh(xt @ torch.tensor(w)).backward(torch.tensor(dout))
    numeric = numerical_gradient_array(lambda: np.tanh(x @ w), x, dout)
    assert rel_error(numeric, xt.grad.numpy()) < 1e-8
    # and with respect to the weights, through the same closure
    wt = torch.tensor(w, requires_grad=True)
    torch.tanh(torch.tensor(x) @ wt).backward(torch.tensor(dout))
    assert rel_error(numerical_gradient_array(lambda: np.tanh(x @ w), w, dout), wt.grad.numpy()) < 1e-8


def test_array_form_catches_a_wrong_backward():
    rng = np.random.default_rng(1)
    x, dout = rng.normal(size=(5,)), rng.normal(size=(5,))
    wrong = dout * np.cos(x) * 1.01  # 1 % off the true d sin(x)/dx
    assert rel_error(wrong, numerical_gradient_array(lambda: np.sin(x), x, dout)) > 1e-3


def test_float32_is_refused():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))
