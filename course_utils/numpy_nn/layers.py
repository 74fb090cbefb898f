"""Neural-network layers in plain NumPy, one forward/backward pair per layer.

Every layer is two functions, in the style of Stanford's CS231n assignments:

* ``*_forward(inputs...) -> (out, cache)`` computes the layer and keeps in ``cache`` what
  the backward pass will need;
* ``*_backward(dout, cache) -> gradients`` receives ``dout = dL/dout`` (the gradient of the
  loss with respect to the layer's output) and returns ``dL/dinput`` (and, for layers with
  parameters, ``dL/dparameter``) by the chain rule.

Layer *objects* (``Linear``, ``ReLU``, ``Dropout``, ``BatchNorm1d``, ...) wrap these functions,
keep their parameters in ``layer.params`` and the latest gradients in ``layer.grads``;
``Sequential`` chains them. Everything works in float64 so that gradient checks can reach 1e-7 and better.

Shapes: a batch is ``(N, D)`` (``N`` examples, ``D`` features); ``Linear`` flattens any
``(N, d1, d2, ...)`` input (an image batch, say) to ``(N, d1*d2*...)``; ``BatchNorm2d`` takes
feature maps ``(N, C, H, W)`` as ``torch.nn.BatchNorm2d`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray
Cache = Any

# --------------------------------------------------------------------------------------
# Linear (dense, fully connected) layer
# --------------------------------------------------------------------------------------


def linear_forward(x: Array, W: Array, b: Array) -> tuple[Array, Cache]:
    """Affine map ``out = x W + b``.

    ``x`` is ``(N, D)`` (or ``(N, d1, ..., dk)``, flattened to ``D = d1...dk``), ``W`` is
    ``(D, M)``, ``b`` is ``(M,)``; ``out`` is ``(N, M)``. Row ``n`` of ``out`` holds the
    ``M`` neurons' pre-activations ``z_j = sum_i x_ni W_ij + b_j`` for example ``n``.
    """
    x2 = x.reshape(x.shape[0], -1)
    out = x2 @ W + b
    return out, (x, W)


def linear_backward(dout: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """Gradients of ``out = x W + b``.

    With ``G = dL/dout`` of shape ``(N, M)``:

        dL/dx = G W^T,     dL/dW = x^T G,     dL/db = sum over the batch of G.

    The bias gradient sums over examples because the same ``b`` is added to every row.
    """
    x, W = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ W.T).reshape(x.shape)
    dW = x2.T @ dout
    db = dout.sum(axis=0)
    return dx, dW, db


# --------------------------------------------------------------------------------------
# Activations (element-wise): out = f(x), so dL/dx = dL/dout * f'(x)
# --------------------------------------------------------------------------------------


def sigmoid(x: Array) -> Array:
    """The logistic function ``1 / (1 + e^{-x})``, computed without overflow for any ``x``
    as ``exp(-log(1 + e^{-x}))`` with NumPy's stable ``logaddexp``."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def sigmoid_forward(x: Array) -> tuple[Array, Cache]:
    """``sigma(x) = 1 / (1 + e^{-x})``, squashing to (0, 1). Caches the output."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout: Array, cache: Cache) -> Array:
    """``sigma'(x) = sigma(x) (1 - sigma(x))``: at most 1/4, which is why deep sigmoid
    networks see their gradients shrink layer after layer."""
    out = cache
    return dout * out * (1.0 - out)


def tanh_forward(x: Array) -> tuple[Array, Cache]:
    """``tanh(x) = 2 sigma(2x) - 1``, squashing to (-1, 1) and centred on 0."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: Array, cache: Cache) -> Array:
    """``tanh'(x) = 1 - tanh(x)^2`` (at most 1, at x = 0)."""
    out = cache
    return dout * (1.0 - out**2)


def relu_forward(x: Array) -> tuple[Array, Cache]:
    """``ReLU(x) = max(0, x)``. Caches the input."""
    return np.maximum(x, 0.0), x


def relu_backward(dout: Array, cache: Cache) -> Array:
    """``ReLU'(x) = 1 if x > 0 else 0`` (we take 0 at the kink x = 0, as PyTorch does)."""
    x = cache
    return dout * (x > 0)


_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_A = 0.044715


def gelu_forward(x: Array) -> tuple[Array, Cache]:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016):

        GELU(x) ~= 0.5 x (1 + tanh(u)),   u = sqrt(2/pi) (x + 0.044715 x^3).

    The exact GELU is ``x Phi(x)`` (``Phi`` the standard normal CDF); this approximation is
    what ``torch.nn.functional.gelu(x, approximate="tanh")`` computes, and what GPT-2 used.
    """
    u = _GELU_C * (x + _GELU_A * x**3)
    t = np.tanh(u)
    return 0.5 * x * (1.0 + t), (x, t)


def gelu_backward(dout: Array, cache: Cache) -> Array:
    """Product and chain rule on ``0.5 x (1 + tanh(u(x)))``:

        d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u).
    """
    x, t = cache
    du = _GELU_C * (1.0 + 3.0 * _GELU_A * x**2)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du)


# --------------------------------------------------------------------------------------
# Output layers and losses
# --------------------------------------------------------------------------------------


def softmax(z: Array) -> Array:
    """Softmax over the last axis: ``p_k = e^{z_k} / sum_j e^{z_j}``.

    Subtracting ``max_j z_j`` first changes nothing mathematically (it cancels) but keeps
    ``e^z`` from overflowing.
    """
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits: Array, y: Array) -> tuple[float, Array]:
    """Mean cross-entropy of softmax probabilities, and its gradient with respect to the logits.

    For ``N`` examples with logits ``z`` ``(N, C)`` and integer labels ``y`` ``(N,)``:

        L = -(1/N) sum_n log p_{n, y_n},      p = softmax(z)
        dL/dz = (p - onehot(y)) / N.

    The gradient is so simple because softmax and log cancel: this is why the two are fused.
    ``log p`` is computed as ``z_y - logsumexp(z)``, which never takes the log of 0.
    """
    y = np.asarray(y)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum
    loss = -log_probs[np.arange(n), y].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n
    return float(loss), dlogits


def mse_loss(pred: Array, target: Array) -> tuple[float, Array]:
    """Mean squared error over every element (as ``torch.nn.MSELoss()``), and its gradient:

        L = (1/K) sum_k (pred_k - target_k)^2,    dL/dpred = 2 (pred - target) / K,

    where ``K`` is the number of elements of ``pred``.
    """
    diff = pred - target
    return float(np.mean(diff**2)), 2.0 * diff / diff.size


# --------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------


def check_drop_probability(p: float) -> float:
    """``p`` as a float if it is a valid drop probability, else a ``ValueError`` that says why
    (``p = 1`` would drop every unit and make the ``1 / (1 - p)`` scaling undefined)."""
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"drop probability p must be in [0, 1), got {p}")
    return float(p)


def dropout_forward(x: Array, p: float, train: bool, rng: np.random.Generator | None = None) -> tuple[Array, Cache]:
    """Inverted dropout with *drop* probability ``p``.

    In training each unit is kept with probability ``1 - p`` and the kept ones are scaled by
    ``1 / (1 - p)``, so that the expected activation is unchanged:
    ``E[out] = (1 - p) * x / (1 - p) = x``. At evaluation time the layer is the identity and
    needs no rescaling (that is what "inverted" buys). ``cache`` is the mask (or ``None``).
    """
    check_drop_probability(p)
    if not train or p == 0.0:
        return x, None
    rng = rng if rng is not None else np.random.default_rng()
    mask = (rng.random(x.shape) >= p) / (1.0 - p)
    return x * mask, mask


def dropout_backward(dout: Array, cache: Cache) -> Array:
    """The mask multiplies the gradient as it multiplied the activation."""
    mask = cache
    return dout if mask is None else dout * mask


# --------------------------------------------------------------------------------------
# Batch normalisation
# --------------------------------------------------------------------------------------


def batchnorm_forward(x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
                      train: bool, momentum: float = 0.1, eps: float = 1e-5) -> tuple[Array, Cache]:
    """Batch normalisation of ``x`` ``(N, D)``, feature by feature (Ioffe & Szegedy 2015).

    Training mode standardises each feature with the batch's mean and (biased) variance,
    then scales and shifts it with the learned ``gamma`` and ``beta`` ``(D,)``:

        mu = mean_n x,   var = mean_n (x - mu)^2,   xhat = (x - mu) / sqrt(var + eps),
        out = gamma * xhat + beta,

    and updates the running averages *in place*, with PyTorch's momentum convention
    (``momentum`` is the weight of the new batch, 0.1 by default):

        running_mean <- (1 - momentum) running_mean + momentum mu
        running_var  <- (1 - momentum) running_var  + momentum var * N / (N - 1).

    As in ``torch.nn.BatchNorm1d``, the running variance takes the *unbiased* batch variance
    (divided by ``N - 1``) while the normalisation itself uses the biased one (divided by
    ``N``). (CS231n writes ``momentum`` for the weight of the *old* value, 0.9.) Evaluation
    mode uses the running averages instead, so every example is transformed by the same
    fixed affine map whatever its batch-mates.
    """
    if not train:
        inv_std = 1.0 / np.sqrt(running_var + eps)
        xhat = (x - running_mean) * inv_std
        return gamma * xhat + beta, (xhat, gamma, inv_std, False)
    n = x.shape[0]
    if n < 2:
        raise ValueError("batch norm in training mode needs at least 2 values of each feature in a "
                         f"batch (got {n}): the variance of one value is 0; use a larger batch")
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    running_mean *= 1.0 - momentum
    running_mean += momentum * mu
    running_var *= 1.0 - momentum
    running_var += momentum * var * n / (n - 1)
    return gamma * xhat + beta, (xhat, gamma, inv_std, True)


def batchnorm_backward(dout: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dgamma, dbeta)`` of batch norm, in the compact form.

    ``dbeta = sum_n dout`` and ``dgamma = sum_n dout * xhat``, as for any per-feature affine
    map. For ``dx``, write ``g = dout * gamma`` (the gradient reaching ``xhat``). In
    training mode every ``xhat_i`` depends on every ``x_j`` of its feature through ``mu`` and
    ``var``; the chain rule through both collapses to

        dx = (1 / sqrt(var + eps)) * (g - mean_n g - xhat * mean_n (g * xhat)).

    The two subtracted terms are what the mean and the variance contribute: they make ``dx``
    sum to zero over the batch and be orthogonal to ``xhat`` up to ``eps`` (shifting or scaling a
    whole feature does not change the output). In evaluation mode ``mu`` and ``var`` are constants
    and ``dx = g / sqrt(running_var + eps)``.
    """
    xhat, gamma, inv_std, train = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    g = dout * gamma
    if not train:
        return g * inv_std, dgamma, dbeta
    dx = inv_std * (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))
    return dx, dgamma, dbeta


def _channels_last(x: Array) -> Array:
    """``(N, C, H, W)`` as ``(N*H*W, C)``: one row per position, one column per channel."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _channels_first(rows: Array, shape: tuple[int, ...]) -> Array:
    """Undo ``_channels_last`` for an array of the given ``(N, C, H, W)`` shape."""
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
                              train: bool, momentum: float = 0.1, eps: float = 1e-5) -> tuple[Array, Cache]:
    """Batch norm of feature maps ``(N, C, H, W)`` with one mean and variance per *channel*, over
    the batch and every position (as ``torch.nn.BatchNorm2d``): a channel is one feature seen at
    ``N*H*W`` places, so it is ``batchnorm_forward`` on an ``(N*H*W, C)`` matrix. The running
    variance's unbiased correction uses ``N*H*W - 1``, as PyTorch does."""
    out, cache = batchnorm_forward(_channels_last(x), gamma, beta, running_mean, running_var,
                                   train, momentum, eps)
    return _channels_first(out, x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dgamma, dbeta)`` of ``spatial_batchnorm_forward``, by the same reshape."""
    inner, shape = cache
    dx, dgamma, dbeta = batchnorm_backward(_channels_last(dout), inner)
    return _channels_first(dx, shape), dgamma, dbeta


# --------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------

INIT_METHODS = ("zeros", "normal", "xavier", "he")


def init_weights(fan_in: int, fan_out: int, method: str = "he", rng: np.random.Generator | None = None,
                 scale: float = 0.01) -> Array:
    """A ``(fan_in, fan_out)`` weight matrix drawn by ``method``:

    * ``"zeros"``: all zero. Every neuron of a layer then computes the same thing and gets
      the same gradient, forever: the symmetry is never broken.
    * ``"normal"``: ``N(0, scale^2)``. Too small a scale makes activations shrink layer after
      layer, too large makes them explode.
    * ``"xavier"`` (Glorot & Bengio 2010): ``N(0, 2 / (fan_in + fan_out))``, which keeps the
      variance of activations and of gradients roughly constant through tanh/sigmoid layers.
    * ``"he"`` (He et al. 2015, "Kaiming"): ``N(0, 2 / fan_in)``; the factor 2 compensates for
      ReLU zeroing half of its inputs.

    Both Xavier and He are the *normal* variants (PyTorch's ``xavier_normal_`` and
    ``kaiming_normal_(nonlinearity="relu")``); ``scale`` is used only by ``"normal"``.
    """
    rng = rng if rng is not None else np.random.default_rng()
    if method == "zeros":
        return np.zeros((fan_in, fan_out))
    if method == "normal":
        std = scale
    elif method == "xavier":
        std = np.sqrt(2.0 / (fan_in + fan_out))
    elif method == "he":
        std = np.sqrt(2.0 / fan_in)
    else:
        raise ValueError(f"unknown init method {method!r}; use one of {INIT_METHODS}")
    return rng.normal(0.0, std, size=(fan_in, fan_out))


# --------------------------------------------------------------------------------------
# Layer objects and a Sequential container
# --------------------------------------------------------------------------------------


class Layer:
    """Base class: ``forward`` keeps its cache, ``backward`` uses it and fills ``grads``.

    ``params`` and ``grads`` are dictionaries with the same keys; optimisers update the
    arrays in ``params`` in place. ``training`` switches layers such as dropout between
    training and evaluation behaviour.
    """

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.training: bool = True
        self.cache: Cache = None

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Layer):
    """Dense layer ``x W + b`` with ``W`` of shape ``(fan_in, fan_out)``, ``b`` zeros."""

    def __init__(self, fan_in: int, fan_out: int, init: str = "he", rng: np.random.Generator | None = None,
                 scale: float = 0.01) -> None:
        super().__init__()
        self.fan_in, self.fan_out, self.init = fan_in, fan_out, init
        self.params = {"W": init_weights(fan_in, fan_out, init, rng, scale), "b": np.zeros(fan_out)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x: Array) -> Array:
        out, self.cache = linear_forward(x, self.params["W"], self.params["b"])
        return out

    def backward(self, dout: Array) -> Array:
        dx, self.grads["W"], self.grads["b"] = linear_backward(dout, self.cache)
        return dx

    def __repr__(self) -> str:
        return f"Linear({self.fan_in}, {self.fan_out}, init={self.init!r})"


class _Activation(Layer):
    """An element-wise layer defined by a forward/backward function pair."""

    _forward = staticmethod(relu_forward)
    _backward = staticmethod(relu_backward)

    def forward(self, x: Array) -> Array:
        out, self.cache = self._forward(x)
        return out

    def backward(self, dout: Array) -> Array:
        return self._backward(dout, self.cache)


class ReLU(_Activation):
    _forward = staticmethod(relu_forward)
    _backward = staticmethod(relu_backward)


class Sigmoid(_Activation):
    _forward = staticmethod(sigmoid_forward)
    _backward = staticmethod(sigmoid_backward)


class Tanh(_Activation):
    _forward = staticmethod(tanh_forward)
    _backward = staticmethod(tanh_backward)


class GELU(_Activation):
    _forward = staticmethod(gelu_forward)
    _backward = staticmethod(gelu_backward)


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "gelu": GELU}


class Dropout(Layer):
    """Inverted dropout (see ``dropout_forward``); active only while ``training`` is True."""

    def __init__(self, p: float, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x: Array) -> Array:
        out, self.cache = dropout_forward(x, self.p, self.training, self.rng)
        return out

    def backward(self, dout: Array) -> Array:
        return dropout_backward(dout, self.cache)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class BatchNorm1d(Layer):
    """Batch norm of ``(N, D)`` activations (see ``batchnorm_forward``): ``gamma`` (ones) and
    ``beta`` (zeros) are parameters; ``running_mean`` (zeros) and ``running_var`` (ones) are
    statistics, updated in training mode and used in evaluation mode, as in PyTorch."""

    _forward = staticmethod(batchnorm_forward)
    _backward = staticmethod(batchnorm_backward)

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.params = {"gamma": np.ones(num_features), "beta": np.zeros(num_features)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)

    def forward(self, x: Array) -> Array:
        out, self.cache = self._forward(x, self.params["gamma"], self.params["beta"], self.running_mean,
                                        self.running_var, self.training, self.momentum, self.eps)
        return out

    def backward(self, dout: Array) -> Array:
        dx, self.grads["gamma"], self.grads["beta"] = self._backward(dout, self.cache)
        return dx

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_features}, momentum={self.momentum})"


class BatchNorm2d(BatchNorm1d):
    """Batch norm of ``(N, C, H, W)`` feature maps, one mean and variance per channel
    (see ``spatial_batchnorm_forward``); ``num_features`` is ``C``."""

    _forward = staticmethod(spatial_batchnorm_forward)
    _backward = staticmethod(spatial_batchnorm_backward)


class Sequential:
    """Layers applied one after the other; ``backward`` runs them in reverse (the chain rule).

    >>> model = Sequential(Linear(2, 8), ReLU(), Linear(8, 2))
    >>> logits = model.forward(x); loss, dlogits = softmax_cross_entropy(logits, y)
    >>> model.backward(dlogits)        # fills every layer's .grads
    """

    def __init__(self, *layers: Layer) -> None:
        self.layers: list[Layer] = list(layers)

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dout: Array) -> Array:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def parameters(self) -> list[tuple[dict[str, Array], dict[str, Array]]]:
        """``(params, grads)`` of every layer that has parameters, in order (activations and
        dropout have none and are skipped)."""
        return [(layer.params, layer.grads) for layer in self.layers if layer.params]

    def num_parameters(self) -> int:
        return sum(v.size for params, _ in self.parameters() for v in params.values())

    def train(self) -> "Sequential":
        """Training mode: dropout drops, batch norm uses batch statistics and updates its running ones."""
        for layer in self.layers:
            layer.training = True
        return self

    def eval(self) -> "Sequential":
        """Evaluation mode: dropout is the identity, batch norm uses its running statistics."""
        for layer in self.layers:
            layer.training = False
        return self

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


def mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu", init: str = "he",
        rng: np.random.Generator | None = None, dropout: float = 0.0, scale: float = 0.01,
        batch_norm: bool = False) -> Sequential:
    """A multi-layer perceptron ``Linear [-> BatchNorm1d] -> act [-> Dropout] -> ... -> Linear``
    (no activation after the last layer: it outputs logits). With ``batch_norm`` every hidden
    layer's pre-activations are batch-normalised (the linear layer's bias then does nothing
    that ``beta`` does not: it is kept only to leave ``Linear`` unchanged).

    >>> mlp([1024, 512, 128, 4], activation="relu", init="he", rng=np.random.default_rng(0), dropout=0.2)
    """
    rng = rng if rng is not None else np.random.default_rng()
    layers: list[Layer] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(fan_in, fan_out, init=init, rng=rng, scale=scale))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(BatchNorm1d(fan_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(Dropout(dropout, rng))
    return Sequential(*layers)


def accuracy(logits: Array, y: Array) -> float:
    """Fraction of examples whose largest logit is the true class."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))
