"""Numerical gradients by central differences, and the relative error used to compare them.

A backward pass is easy to get subtly wrong; the derivative's definition gives an
independent check. For a scalar function ``f`` and each entry ``x_i``:

    df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / (2h).

The central difference has error ``O(h^2)`` (the one-sided ``(f(x+h) - f(x)) / h`` only
``O(h)``); with ``h = 1e-5`` in float64 the truncation error (~h^2 = 1e-10) and the rounding
error (~1e-16 / h = 1e-11) are both small, so a correct backward pass agrees to about 1e-7
relative error or better, and a wrong one is typically off by 1e-2 or more.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of ``f()`` with respect to the array ``x`` by central differences.

    ``f`` takes no argument: it reads ``x`` (for example a layer's weight array) from its
    closure. Each entry of ``x`` is nudged in place by ``+h`` and ``-h`` and then restored, so
    ``x`` is unchanged on return. Costs ``2 * x.size`` evaluations of ``f``: use small arrays.
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays, got {x.dtype}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2.0 * h)
        it.iternext()
    return grad


def numerical_gradient_array(f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray,
                             h: float = 1e-5) -> np.ndarray:
    """What a layer's backward pass must return for ``x``, given the upstream gradient ``dout``.

    ``f()`` computes the layer's output array from ``x`` (read from its closure, as in
    ``numerical_gradient``). The scalar ``L = sum(f() * dout)`` has ``dL/d out = dout`` exactly,
    so its gradient with respect to ``x`` is the chain rule's ``sum_j dout_j * d out_j / d x_i``:
    precisely what ``backward(dout, cache)`` computes. This is CS231n's
    ``eval_numerical_gradient_array(f, x, df)``.
    """
    dout = np.asarray(dout, dtype=np.float64)
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference, relative to the size of the gradients compared:

        max_i |a_i - b_i| / max(1e-12, max_i (|a_i| + |b_i|)).

    Scale-free (multiplying the loss by 1000 does not change it) and, unlike the purely
    element-wise ratio ``|a_i - b_i| / (|a_i| + |b_i|)``, not thrown off by entries that are
    (nearly) zero, where rounding noise alone gives a ratio near 1. Rules of thumb for
    float64 checks: below 1e-7 correct; 1e-7 to 1e-4 look closer (a kink of ReLU crossed by
    ``h``?); above 1e-4 a bug.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = max(1e-12, float(np.max(np.abs(a) + np.abs(b)))) if a.size else 1e-12
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0
