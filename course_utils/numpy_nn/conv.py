"""Convolution and pooling in NumPy, forward and backward (lesson 07).

The layers follow the CS231n convention used by ``nn_numpy``: ``*_forward`` returns
``(out, cache)`` and ``*_backward(dout, cache)`` returns the gradient of every input.
Shapes follow PyTorch: images are ``(N, C, H, W)``, kernels ``(F, C, kh, kw)``, biases ``(F,)``.

Like every deep-learning library, "convolution" here means *cross-correlation*: the kernel
slides over the image without being flipped,

    out[n, f, i, j] = b[f] + sum_{c, a, b} x_pad[n, c, i*s + a, j*s + b] * w[f, c, a, b].

Three ways to compute the same thing, from the clearest to the fastest:

* ``conv2d_naive``: four loops and a dot product per output number (for reading);
* ``conv2d_forward``: im2col, i.e. copy every window into a row of a matrix and do one
  matrix multiply (what early GPU libraries did; still how people explain it);
* ``conv2d_backward_as_convolutions``: the backward pass written as two convolutions, the
  textbook identity that the lesson derives, checked against ``conv2d_backward``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Length of a convolution's (or pooling's) output along one axis.

    ``floor((size + 2 * padding - kernel) / stride) + 1``: the number of positions at which a
    window of length ``kernel`` fits in the padded input when it moves ``stride`` at a time.
    """
    if kernel < 1 or stride < 1 or padding < 0:
        raise ValueError(f"need kernel >= 1, stride >= 1, padding >= 0 (got {kernel}, {stride}, {padding})")
    if size + 2 * padding < kernel:
        raise ValueError(f"a kernel of {kernel} does not fit in {size} + 2*{padding} pixels")
    return (size + 2 * padding - kernel) // stride + 1


def pad_images(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes of ``(N, C, H, W)`` by ``padding`` on every side."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


# --------------------------------------------------------------------------------------
# The loop version: slow, but it reads like the formula
# --------------------------------------------------------------------------------------


def conv2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 stride: int = 1, padding: int = 0) -> np.ndarray:
    """Convolution (cross-correlation) with explicit loops: one dot product per output number."""
    N, C, H, W = x.shape
    F, C_w, kh, kw = w.shape
    assert C == C_w, f"input has {C} channels, kernel expects {C_w}"
    out_h, out_w = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    x_pad = pad_images(x, padding)
    out = np.zeros((N, F, out_h, out_w), dtype=np.result_type(x, w))
    for n in range(N):
        for f in range(F):
            for i in range(out_h):
                for j in range(out_w):
                    window = x_pad[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    out[n, f, i, j] = np.sum(window * w[f])
    if b is not None:
        out += b.reshape(1, F, 1, 1)
    return out


# --------------------------------------------------------------------------------------
# im2col: every window becomes a row, the convolution becomes one matrix multiply
# --------------------------------------------------------------------------------------


def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Copy every ``(C, kh, kw)`` window of ``x`` into a row: ``(N * out_h * out_w, C * kh * kw)``.

    ``sliding_window_view`` gives all windows as a view (no copy) of shape
    ``(N, C, H', W', kh, kw)``; slicing with ``::stride`` keeps the windows the stride visits;
    the final ``reshape`` makes the copy that is the im2col matrix.
    """
    N, C, H, W = x.shape
    out_h, out_w = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    windows = sliding_window_view(pad_images(x, padding), (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (N, C, out_h, out_w, kh, kw)
    assert windows.shape[2:4] == (out_h, out_w)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(N * out_h * out_w, C * kh * kw)


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kh: int, kw: int,
           stride: int = 1, padding: int = 0) -> np.ndarray:
    """The adjoint of ``im2col``: add every row back onto the pixels its window came from.

    Windows overlap when ``stride < kernel``, so one pixel can receive several contributions:
    they are summed. The loop runs over the ``kh * kw`` kernel offsets only; each step moves
    one value per window at once.
    """
    N, C, H, W = x_shape
    out_h, out_w = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    cols = cols.reshape(N, out_h, out_w, C, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, kh, kw, out_h, out_w)
    dx_pad = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            dx_pad[:, :, a:a + stride * out_h:stride, b:b + stride * out_w:stride] += cols[:, :, a, b]
    return dx_pad[:, :, padding:padding + H, padding:padding + W]


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1,
                   padding: int = 0) -> tuple[np.ndarray, tuple]:
    """Vectorised convolution: ``im2col(x) @ w_matrix.T + b``. Returns ``(out, cache)``."""
    N, C, H, W = x.shape
    F, C_w, kh, kw = w.shape
    assert C == C_w, f"input has {C} channels, kernel expects {C_w}"
    out_h, out_w = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    cols = im2col(x, kh, kw, stride, padding)  # (N*out_h*out_w, C*kh*kw)
    out = cols @ w.reshape(F, -1).T + b  # (N*out_h*out_w, F)
    out = out.reshape(N, out_h, out_w, F).transpose(0, 3, 1, 2)
    return out, (x.shape, cols, w, stride, padding)


def conv2d_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of a convolution, given ``dout = dL/dout``.

    The forward pass was a matrix multiply ``out = cols @ W.T + b``; its backward pass is the
    one of a linear layer (``dW = dout.T @ cols``, ``dcols = dout @ W``), followed by
    ``col2im`` to send each window's gradient back to its pixels.
    """
    x_shape, cols, w, stride, padding = cache
    F, C, kh, kw = w.shape
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, F)  # (N*out_h*out_w, F)
    db = dout_rows.sum(axis=0)
    dw = (dout_rows.T @ cols).reshape(w.shape)
    dcols = dout_rows @ w.reshape(F, -1)
    dx = col2im(dcols, x_shape, kh, kw, stride, padding)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# The backward pass, written as two convolutions (what the lesson derives)
# --------------------------------------------------------------------------------------


def dilate(dout: np.ndarray, stride: int) -> np.ndarray:
    """Insert ``stride - 1`` zeros between neighbouring values of the two spatial axes.

    A strided convolution equals a stride-1 convolution whose output was subsampled; the
    gradient of that subsampling puts the upstream gradient back on the visited positions,
    with zeros in between.
    """
    if stride == 1:
        return dout
    N, F, oh, ow = dout.shape
    out = np.zeros((N, F, (oh - 1) * stride + 1, (ow - 1) * stride + 1), dtype=dout.dtype)
    out[:, :, ::stride, ::stride] = dout
    return out


def conv2d_backward_as_convolutions(dout: np.ndarray, x: np.ndarray, w: np.ndarray,
                                    stride: int = 1, padding: int = 0
                                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same ``(dx, dw, db)`` as ``conv2d_backward``, from the two textbook identities.

    * ``dx`` is a *full* convolution of the (dilated) upstream gradient with the kernel
      flipped in both spatial directions, and with input and output channels swapped;
    * ``dw`` is a correlation of the (padded) input with the (dilated) upstream gradient;
    * ``db`` is the upstream gradient summed over the batch and all positions.

    Slow (it calls ``conv2d_naive``) and written for reading, not for use.
    """
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    g = dilate(dout, stride)  # (N, F, gh, gw)
    gh, gw = g.shape[2:]
    # dx: pad g by k-1 ("full"), correlate with the flipped kernel, channels swapped (C, F, kh, kw).
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    g_full = np.pad(g, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    dx_pad_used = conv2d_naive(g_full, w_flipped)  # (N, C, gh + kh - 1, gw + kw - 1)
    # The last rows/columns of the padded input may never have been visited by a window
    # (when the stride does not divide evenly); their gradient is zero.
    dx_pad = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=dx_pad_used.dtype)
    dx_pad[:, :, :gh + kh - 1, :gw + kw - 1] = dx_pad_used
    dx = dx_pad[:, :, padding:padding + H, padding:padding + W]
    # dw[f, c] = sum_n correlate(x_pad[n, c], g[n, f]): treat the batch axis as the channel axis.
    x_pad = pad_images(x, padding)[:, :, :gh + kh - 1, :gw + kw - 1]
    dw = conv2d_naive(x_pad.transpose(1, 0, 2, 3), g.transpose(1, 0, 2, 3))  # (C, F, kh, kw)
    dw = dw.transpose(1, 0, 2, 3)
    db = dout.sum(axis=(0, 2, 3))
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------


def _pool_windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """All pooling windows as a view ``(N, C, out_h, out_w, size, size)``."""
    return sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]


def max_pool_forward(x: np.ndarray, size: int = 2, stride: int | None = None) -> tuple[np.ndarray, tuple]:
    """Max pooling over ``size`` × ``size`` windows (``stride`` defaults to ``size``, as in torch)."""
    stride = stride or size
    windows = _pool_windows(x, size, stride)
    N, C, out_h, out_w = windows.shape[:4]
    flat = windows.reshape(N, C, out_h, out_w, size * size)
    argmax = flat.argmax(axis=-1)  # which pixel of each window won (first one on ties)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, (x.shape, argmax, size, stride)


def max_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """The gradient flows only to the pixel that won each window; the others get zero."""
    x_shape, argmax, size, stride = cache
    N, C, out_h, out_w = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for a in range(size):
        for b in range(size):
            won = argmax == a * size + b
            dx[:, :, a:a + stride * out_h:stride, b:b + stride * out_w:stride] += dout * won
    return dx


def avg_pool_forward(x: np.ndarray, size: int = 2, stride: int | None = None) -> tuple[np.ndarray, tuple]:
    """Average pooling over ``size`` × ``size`` windows."""
    stride = stride or size
    out = _pool_windows(x, size, stride).mean(axis=(-2, -1))
    return out, (x.shape, size, stride)


def avg_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Every pixel of a window receives an equal share, ``1 / size²``, of its gradient."""
    x_shape, size, stride = cache
    N, C, out_h, out_w = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for a in range(size):
        for b in range(size):
            dx[:, :, a:a + stride * out_h:stride, b:b + stride * out_w:stride] += dout / (size * size)
    return dx
