"""Gradient-descent optimisers in NumPy: SGD, momentum, RMSProp and Adam.

An optimiser holds a list of ``(params, grads)`` dictionary pairs (what
``Sequential.parameters()`` returns) and, on ``step()``, updates every array in ``params``
*in place* from the matching array in ``grads``. The backward pass overwrites the gradients,
so there is no ``zero_grad()`` to call.

``weight_decay`` is L2 regularisation: adding ``(lambda/2) ||w||^2`` to the loss adds
``lambda w`` to the gradient, which is what every optimiser here does before its update
(the same as ``weight_decay`` in ``torch.optim.SGD/RMSprop/Adam``; AdamW's *decoupled* decay
is a different thing). It is applied to biases too, as torch does when given all parameters.

Each class states its update rule and how it maps onto ``torch.optim``; the unit tests check
that 20 steps of ours follow torch's trajectory to float64 precision.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

Pairs = list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


def _as_pairs(model_or_pairs) -> Pairs:
    """Accept a model with ``.parameters()`` or an iterable of ``(params, grads)`` pairs."""
    if hasattr(model_or_pairs, "parameters"):
        return list(model_or_pairs.parameters())
    return list(model_or_pairs)


class Optimizer:
    """Base class: walks every parameter array and calls ``update`` on it.

    ``state[(i, name)]`` holds per-parameter memory (velocity, squared-gradient average...).
    """

    def __init__(self, model_or_pairs: Iterable | object, lr: float, weight_decay: float = 0.0) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.pairs = _as_pairs(model_or_pairs)
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self.t = 0  # number of steps taken

    def step(self) -> None:
        self.t += 1
        for i, (params, grads) in enumerate(self.pairs):
            for name, w in params.items():
                g = grads[name]
                if self.weight_decay:
                    g = g + self.weight_decay * w
                self.update(w, g, self.state.setdefault((i, name), {}))

    def update(self, w: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: ``w <- w - lr * g``.

    Identical to ``torch.optim.SGD(lr=lr, weight_decay=wd)``. Whether it is "batch",
    "stochastic" or "mini-batch" gradient descent depends only on how many examples the
    gradient ``g`` was averaged over.
    """

    def update(self, w, g, state):
        w -= self.lr * g


class Momentum(Optimizer):
    """Gradient descent with (heavy-ball) momentum, Polyak 1964:

        v <- beta * v + g,        w <- w - lr * v,        v starts at 0.

    ``v`` is a running sum of past gradients, decaying by ``beta`` per step: directions that
    agree from step to step build up speed (up to ``1 / (1 - beta)`` times the step of plain
    SGD), oscillating directions cancel.

    *Mapping to torch:* this is exactly ``torch.optim.SGD(lr, momentum=beta, dampening=0,
    nesterov=False)`` (torch sets ``v = g`` on the first step, which is the same as starting
    from ``v = 0``). CS231n writes it as ``v <- beta v - lr g; w <- w + v``: with a constant
    learning rate that velocity is ``-lr`` times ours and the trajectory is identical. Some texts
    use the "average" form ``v <- beta v + (1 - beta) g``; it equals ours with the learning
    rate multiplied by ``1 - beta``.
    """

    def __init__(self, model_or_pairs, lr: float, beta: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(model_or_pairs, lr, weight_decay)
        self.beta = beta

    def update(self, w, g, state):
        v = state.setdefault("v", np.zeros_like(w))
        v *= self.beta
        v += g
        w -= self.lr * v


class RMSProp(Optimizer):
    """RMSProp (Hinton, Coursera lecture 6e, 2012): divide each step by a running RMS of the
    gradient, so every parameter moves at a similar pace whatever its gradient's scale:

        s <- beta * s + (1 - beta) * g^2,      w <- w - lr * g / (sqrt(s) + eps).

    *Mapping to torch:* ``torch.optim.RMSprop(lr, alpha=beta, eps=eps)`` with ``alpha`` our
    ``beta``; torch adds ``eps`` *outside* the square root, as we do (some implementations put
    it inside, ``sqrt(s + eps)``, which changes the result when ``s`` is tiny). No momentum,
    not centred.
    """

    def __init__(self, model_or_pairs, lr: float, beta: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(model_or_pairs, lr, weight_decay)
        self.beta, self.eps = beta, eps

    def update(self, w, g, state):
        s = state.setdefault("s", np.zeros_like(w))
        s *= self.beta
        s += (1.0 - self.beta) * g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): momentum on the gradient and RMSProp's scaling, both as
    exponential averages, with a correction for their start at zero:

        m <- beta1 m + (1 - beta1) g,          s <- beta2 s + (1 - beta2) g^2,
        m_hat = m / (1 - beta1^t),             s_hat = s / (1 - beta2^t),
        w <- w - lr * m_hat / (sqrt(s_hat) + eps),       t = 1, 2, ...

    Without the bias correction the first steps would be too large for the default betas:
    ``m`` and ``s`` start at 0, and ``s`` (the longer memory) underestimates far more, so the
    uncorrected ``m / sqrt(s)`` is ``(1 - beta1^t) / sqrt(1 - beta2^t)`` times the corrected
    one, 3.16 at t = 1.

    *Mapping to torch:* ``torch.optim.Adam(lr, betas=(beta1, beta2), eps=eps,
    weight_decay=wd)``; torch computes the same quantity rearranged (``eps`` added to
    ``sqrt(s) / sqrt(1 - beta2^t)``), equal up to rounding. ``weight_decay`` here is L2 added
    to the gradient, as in ``torch.optim.Adam``, not AdamW's decoupled decay.
    """

    def __init__(self, model_or_pairs, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(model_or_pairs, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, w, g, state):
        m = state.setdefault("m", np.zeros_like(w))
        s = state.setdefault("s", np.zeros_like(w))
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        s *= self.beta2
        s += (1.0 - self.beta2) * g * g
        m_hat = m / (1.0 - self.beta1**self.t)
        s_hat = s / (1.0 - self.beta2**self.t)
        w -= self.lr * m_hat / (np.sqrt(s_hat) + self.eps)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSProp, "adam": Adam}
