"""Figures and widget callbacks for lesson 07 (convolution from scratch).

Two pictures carry the lesson:

* ``draw_sliding_dot_product``: a small integer image, its padding, the kernel, and the output
  filled in one window at a time, with the dot product of the current window written out;
* ``show_kernel``: a classic hand-made kernel (blur, sharpen, Sobel, Laplacian) applied to a
  real MRI slice with a chosen stride and padding.

Both are plain functions, so the lesson can draw them once statically and then hand them to
``ipywidgets.interact``; they return ``None`` so that ``interact`` displays only the figure.
All the arithmetic is done by ``course_utils.numpy_nn.conv``.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from ..numpy_nn.conv import conv2d_forward, output_size, pad_images
from .. import figure_style as style


SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=float)

#: Kernels that image processing used long before deep learning. A CNN *learns* its kernels;
#: its first layer often ends up with ones that look like these.
CLASSIC_KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
    "box blur 3x3": np.ones((3, 3)) / 9,
    "Gaussian blur 5x5": np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
    "Sobel x (vertical edges)": SOBEL_X,
    "Sobel y (horizontal edges)": SOBEL_X.T.copy(),
    "Laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float),
}


def filter_image(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Apply one 2-D kernel to one 2-D image with ``conv2d_forward``; returns a 2-D array."""
    x = np.asarray(image, dtype=np.float64)[None, None]
    w = np.asarray(kernel, dtype=np.float64)[None, None]
    out, _ = conv2d_forward(x, w, np.zeros(1), stride=stride, padding=padding)
    return out[0, 0]


def dot_product_terms(window: np.ndarray, kernel: np.ndarray) -> str:
    """The dot product of a window and a kernel written out, e.g. ``"1·1 + 2·0 + ... = 3"``."""
    def number(v: float) -> str:
        text = f"{v:g}"
        return f"({text})" if v < 0 else text

    terms = [f"{number(a)}·{number(k)}" for a, k in zip(np.ravel(window), np.ravel(kernel))]
    return " + ".join(terms) + f" = {float(np.sum(window * kernel)):g}"


def _grid(ax, values: np.ndarray, title: str, shown: np.ndarray | None = None, cmap: str = "Blues",
          fontsize: float = 10) -> None:
    """Draw a small matrix as coloured cells with its numbers written in them.

    The numbers themselves say what each colour means, so no colour bar is drawn. A matrix with
    negative entries (an edge kernel) is drawn with the diverging map centred on zero instead
    of ``cmap``, so that the sign shows as red or blue.
    """
    values = np.asarray(values, dtype=float)
    shown = np.ones(values.shape, bool) if shown is None else shown
    masked = np.ma.masked_array(values, ~shown)
    if values.min() < 0:
        cmap, vmax = style.DIVERGING, float(np.abs(values).max())
        vmin = -vmax
        darkness = np.abs(values) / vmax
    else:
        vmin, vmax = 0.0, max(float(values.max()), 1e-9)
        darkness = (values - vmin) / (vmax - vmin)
    ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(values):
        if shown[i, j]:
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=fontsize,
                    color="w" if darkness[i, j] > 0.6 else "k")
    ax.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title)


def draw_sliding_dot_product(image: np.ndarray, kernel: np.ndarray, step: int = 0,
                             stride: int = 1, padding: int = 0) -> None:
    """Show window number ``step`` of a convolution: input, kernel, and the output so far.

    The padded input is drawn with the padding in grey and the current window outlined in red;
    the output holds the numbers computed up to and including this window; the title below
    writes out the dot product that produced the newest number.
    """
    image, kernel = np.asarray(image, float), np.asarray(kernel, float)
    kh, kw = kernel.shape
    out_h = output_size(image.shape[0], kh, stride, padding)
    out_w = output_size(image.shape[1], kw, stride, padding)
    step = int(np.clip(step, 0, out_h * out_w - 1))
    i, j = divmod(step, out_w)
    padded = pad_images(image[None, None], padding)[0, 0]
    window = padded[i * stride:i * stride + kh, j * stride:j * stride + kw]
    out = filter_image(image, kernel, stride, padding)
    done = (np.arange(out_h * out_w) <= step).reshape(out_h, out_w)

    fig, axes = plt.subplots(1, 3, figsize=style.figsize(3.6),
                             gridspec_kw={"width_ratios": [padded.shape[1], kw + 1, out_w + 1]})
    _grid(axes[0], padded, f"input {image.shape[0]}×{image.shape[1]}\npadding {padding}, stride {stride}")
    if padding:
        inner = Rectangle((padding - 0.5, padding - 0.5), image.shape[1], image.shape[0],
                          fill=False, edgecolor="0.3", linewidth=1.5, linestyle="--")
        axes[0].add_patch(inner)
    axes[0].add_patch(Rectangle((j * stride - 0.5, i * stride - 0.5), kw, kh, fill=False, edgecolor="red", linewidth=3))
    _grid(axes[1], kernel, f"kernel {kh}×{kw}", cmap="Oranges")
    _grid(axes[2], out, f"output {out_h}×{out_w}", shown=done, cmap="Greens")
    axes[2].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=3))
    fig.suptitle(f"out[{i}, {j}] = " + dot_product_terms(window, kernel), y=0.02, va="bottom", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    plt.show()


def show_kernel(image: np.ndarray, kernel_name: str = "Sobel x (vertical edges)",
                stride: int = 1, padding: int = 1) -> None:
    """Apply ``CLASSIC_KERNELS[kernel_name]`` to an MRI slice and show input, kernel and output.

    Kernels whose numbers sum to zero (edge detectors) produce signed outputs, drawn with a
    diverging colour map centred on zero; the others are drawn in grey.
    """
    kernel = CLASSIC_KERNELS[kernel_name]
    image = np.asarray(image, dtype=np.float64)
    out = filter_image(image, kernel, stride, padding)

    # the kernel panel widens with the kernel so that its written numbers do not overlap
    fig, axes = plt.subplots(1, 3, figsize=style.figsize(3.1),
                             gridspec_kw={"width_ratios": [4, max(2.4, 0.85 * kernel.shape[1]), 4]})
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title(f"MRI slice {image.shape[0]}×{image.shape[1]}")
    _grid(axes[1], np.round(kernel, 3), textwrap.fill(kernel_name, 16), cmap="Oranges",
          fontsize=style.MIN_FONT_SIZE if kernel.shape[0] > 3 else 9)
    if abs(kernel.sum()) < 1e-9:
        limit = np.percentile(np.abs(out), 99.5) or 1.0
        shown = axes[2].imshow(out, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        shown = axes[2].imshow(out, cmap="gray", vmin=np.percentile(out, 0.5), vmax=np.percentile(out, 99.5))
    fig.colorbar(shown, ax=axes[2], fraction=0.046)
    axes[2].set_title(f"output {out.shape[0]}×{out.shape[1]}\n(stride {stride}, padding {padding})")
    for ax in (axes[0], axes[2]):
        ax.axis("off")
    fig.tight_layout()
    plt.show()
