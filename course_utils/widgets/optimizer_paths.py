"""Optimiser paths on 2-D loss surfaces (lesson 03), using the NumPy optimisers themselves.

Two surfaces:

* ``LinearRegression2D``: fitting ``t ~ w0 x + w1`` to ``n`` points by mean squared error.
  Its loss is a quadratic bowl whose shape comes from the data; because the inputs ``x``
  are not centred, the bowl is a long narrow valley (condition number in the hundreds), the
  classic case where plain gradient descent zig-zags. It is a sum over examples, so a
  *mini-batch* gradient is a genuine random estimate of the full one, and the batch-size
  slider means what it means on real data.
* ``rosenbrock``: ``(1 - a)^2 + 100 (b - a^2)^2``, a curved banana-shaped valley with its
  minimum at (1, 1); the textbook stress test for optimisers.

``optimizer_paths_figure`` is the callback of lesson 03's sliders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.contour import QuadContourSet

from ..numpy_nn.optim import Adam, Momentum, OPTIMIZERS, Optimizer, RMSProp
from .. import figure_style as style


GradFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class LinearRegression2D:
    """Least squares on ``n`` synthetic points: ``L(w) = mean((w0 x + w1 - t)^2) / 2``.

    ``x ~ N(x_mean, 1)`` and ``t = 2 x - 1 + noise``: the minimum is near ``w = (2, -1)``.
    """

    n: int = 200
    x_mean: float = 3.0
    noise: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.x = rng.normal(self.x_mean, 1.0, self.n)
        self.t = 2.0 * self.x - 1.0 + rng.normal(0.0, self.noise, self.n)
        A = np.column_stack([self.x, np.ones(self.n)])
        self.w_star = np.linalg.lstsq(A, self.t, rcond=None)[0]
        self.hessian = A.T @ A / self.n

    def loss(self, w: np.ndarray) -> np.ndarray:
        """Full-data loss; ``w`` may be ``(2,)`` or a grid ``(2, ...)``."""
        w0, w1 = w[0], w[1]
        r = np.multiply.outer(w0, self.x) + np.expand_dims(w1, -1) - self.t
        return 0.5 * np.mean(r**2, axis=-1)

    def grad(self, w: np.ndarray, rng: np.random.Generator | None = None, batch_size: int | None = None) -> np.ndarray:
        """Gradient on a random mini-batch of ``batch_size`` examples (all of them if None)."""
        if batch_size is None or batch_size >= self.n:
            x, t = self.x, self.t
        else:
            idx = rng.choice(self.n, size=batch_size, replace=False)
            x, t = self.x[idx], self.t[idx]
        r = w[0] * x + w[1] - t
        return np.array([np.mean(r * x), np.mean(r)])

    def condition_number(self) -> float:
        eig = np.linalg.eigvalsh(self.hessian)
        return float(eig[-1] / eig[0])


def rosenbrock(w: np.ndarray) -> np.ndarray:
    """``(1 - a)^2 + 100 (b - a^2)^2`` for ``w = (a, b)`` (or a grid ``(2, ...)``)."""
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def rosenbrock_grad(w: np.ndarray) -> np.ndarray:
    a, b = w
    return np.array([-2.0 * (1.0 - a) - 400.0 * a * (b - a**2), 200.0 * (b - a**2)])


def make_optimizer(name: str, pairs, lr: float, beta: float = 0.9) -> Optimizer:
    """One of ``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"`` with ``beta`` as the
    momentum coefficient (Momentum's ``beta``, Adam's ``beta1``); RMSProp keeps its default."""
    cls = OPTIMIZERS[name]
    if cls is Momentum:
        return Momentum(pairs, lr=lr, beta=beta)
    if cls is Adam:
        return Adam(pairs, lr=lr, beta1=beta)
    if cls is RMSProp:
        return RMSProp(pairs, lr=lr)
    return cls(pairs, lr=lr)


def optimize_path(name: str, grad_fn: Callable[[np.ndarray], np.ndarray], w0, lr: float, steps: int,
                  beta: float = 0.9, max_norm: float = 1e6) -> np.ndarray:
    """Run ``steps`` updates of optimiser ``name`` from ``w0`` and return the path
    ``(steps + 1, 2)``. ``grad_fn(w)`` returns the (possibly stochastic) gradient at ``w``.
    A diverging run stops early (the path is cut where ``|w|`` exceeds ``max_norm``)."""
    params = {"w": np.array(w0, dtype=np.float64)}
    grads = {"w": np.zeros(2)}
    opt = make_optimizer(name, [(params, grads)], lr, beta)
    path = [params["w"].copy()]
    for _ in range(steps):
        grads["w"] = grad_fn(params["w"])
        opt.step()
        if not np.all(np.isfinite(params["w"])) or np.linalg.norm(params["w"]) > max_norm:
            break
        path.append(params["w"].copy())
    return np.array(path)


def draw_surface(loss_fn: Callable[[np.ndarray], np.ndarray], extent: tuple[float, float, float, float],
                 ax: plt.Axes, log: bool = True, minimum: np.ndarray | None = None,
                 colorbar: bool = True) -> QuadContourSet:
    """Contour lines of ``loss_fn`` over ``extent = (x0, x1, y0, y1)``, coloured by the loss
    with the course's sequential map (logarithmic levels and colours if ``log``).

    ``colorbar`` adds the key from line colour to loss, since the colour encodes a value.
    Returns the contour set.
    """
    a, b = np.meshgrid(np.linspace(extent[0], extent[1], 300), np.linspace(extent[2], extent[3], 300))
    z = loss_fn(np.stack([a, b]))
    if log:
        low = max(z.min(), 1e-3)
        levels, norm = np.logspace(np.log10(low), np.log10(z.max()), 25), LogNorm(low, z.max())
    else:
        levels, norm = np.linspace(z.min(), z.max(), 25), Normalize(z.min(), z.max())
    contours = ax.contour(a, b, z, levels=levels, cmap=style.SEQUENTIAL, norm=norm, linewidths=0.8)
    if colorbar:  # a continuous bar with the lines' map and norm: readable ticks (decades on a log scale)
        ax.figure.colorbar(ScalarMappable(norm=norm, cmap=style.SEQUENTIAL), ax=ax,
                           label="loss" + (" (log scale)" if log else ""))
    if minimum is not None:
        ax.plot(*minimum, marker="*", color="k", markersize=14, zorder=4)
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    return contours


COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "rmsprop": "tab:green", "adam": "tab:red"}
REGRESSION_START = np.array([-0.5, 4.0])
REGRESSION_EXTENT = (-1.0, 4.0, -5.0, 5.0)
ROSENBROCK_START = np.array([-1.5, 2.0])
ROSENBROCK_EXTENT = (-2.0, 2.0, -1.0, 3.0)


def optimizer_paths_figure(optimizer: str = "momentum", lr: float = 0.02, beta: float = 0.9,
                           batch_size: int = 200, steps: int = 100, seed: int = 0) -> plt.Figure:
    """Lesson 03's sliders: the path of ``optimizer`` on the regression surface with
    mini-batches of ``batch_size`` (200 = the full batch), next to its loss curve.

    Full-batch plain gradient descent with the same ``lr`` is drawn faintly for reference.
    """
    problem = LinearRegression2D()
    rng = np.random.default_rng(seed)
    path = optimize_path(optimizer, lambda w: problem.grad(w, rng, batch_size), REGRESSION_START, lr, steps, beta)
    reference = optimize_path("sgd", problem.grad, REGRESSION_START, lr, steps)
    fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=style.figsize(4.0), layout="constrained")
    draw_surface(problem.loss, REGRESSION_EXTENT, ax_p, minimum=problem.w_star)
    ax_p.plot(*reference.T, "-", color="gray", alpha=0.6, lw=1, label="full-batch GD, same lr")
    ax_p.plot(*path.T, ".-", color=COLORS[optimizer], lw=1.2, ms=3, label=f"{optimizer}, batch {batch_size}")
    ax_p.set_xlabel("$w_0$ (slope)")
    ax_p.set_ylabel("$w_1$ (intercept)")
    ax_p.legend(loc="lower left")  # the paths start top left and end in the middle
    ax_p.set_title(f"lr={lr:g}, beta={beta:g}, batch={batch_size}")
    ax_l.semilogy(problem.loss(reference.T), color="gray", alpha=0.6, label="full-batch GD")
    ax_l.semilogy(problem.loss(path.T), color=COLORS[optimizer], label=optimizer)
    ax_l.axhline(problem.loss(problem.w_star), color="k", ls=":", lw=1, label="minimum")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("full-data loss")
    if len(path) < steps + 1:
        ax_l.set_title(f"diverged after {len(path) - 1} steps")
    ax_l.legend()
    ax_l.grid(alpha=0.3)
    return fig
