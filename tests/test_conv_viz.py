"""The lesson-07 widget callbacks draw what they claim, computed by conv_numpy."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from course_utils.numpy_nn.conv import output_size  # noqa: E402
from course_utils import figure_style as style  # noqa: E402
from course_utils.widgets.convolution import (CLASSIC_KERNELS, dot_product_terms, draw_sliding_dot_product,
                                              filter_image, show_kernel)  # noqa: E402

IMAGE = np.array([[1, 2, 0, 1, 3], [0, 1, 2, 3, 1], [1, 0, 1, 2, 2], [2, 1, 0, 1, 0], [0, 2, 1, 0, 1]], float)
KERNEL = np.array([[1, 0, -1]] * 3, float)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_classic_kernels_have_expected_sums():
    # blurs keep the mean brightness (sum 1), edge detectors ignore flat regions (sum 0)
    for name in ("identity", "box blur 3x3", "Gaussian blur 5x5", "sharpen"):
        assert np.isclose(CLASSIC_KERNELS[name].sum(), 1.0), name
    for name in ("Sobel x (vertical edges)", "Sobel y (horizontal edges)", "Laplacian"):
        assert np.isclose(CLASSIC_KERNELS[name].sum(), 0.0), name


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_filter_image_equals_torch(stride, padding):
    image = np.random.default_rng(0).random((17, 13))
    for kernel in CLASSIC_KERNELS.values():
        expected = F.conv2d(torch.tensor(image)[None, None], torch.tensor(kernel)[None, None],
                            stride=stride, padding=padding)[0, 0].numpy()
        np.testing.assert_allclose(filter_image(image, kernel, stride, padding), expected, atol=1e-12)


def test_dot_product_terms_writes_out_the_sum():
    text = dot_product_terms(IMAGE[:3, :3], KERNEL)
    assert text.startswith("1·1 + 2·0 + 0·(-1)")
    assert text.endswith("= -1")


@pytest.mark.parametrize("kernel_name, stride, padding",
                         [(name, 1 + i % 3, i % 2) for i, name in enumerate(CLASSIC_KERNELS)])
def test_show_kernel_draws_the_filtered_slice(kernel_name, stride, padding):
    image = np.random.default_rng(1).random((40, 40)) * 255
    assert show_kernel(image, kernel_name, stride, padding) is None  # interact shows nothing extra
    axes = plt.gcf().axes
    shown = axes[2].images[0].get_array()
    k = CLASSIC_KERNELS[kernel_name].shape[0]
    assert shown.shape == (output_size(40, k, stride, padding),) * 2
    np.testing.assert_allclose(shown, filter_image(image, CLASSIC_KERNELS[kernel_name], stride, padding))
    assert f"stride {stride}, padding {padding}" in axes[2].get_title()


@pytest.mark.parametrize("step, stride, padding, cell", [(0, 1, 0, (0, 0)), (4, 1, 0, (1, 1)), (8, 1, 0, (2, 2)),
                                                         (5, 2, 1, (1, 2)), (99, 1, 1, (4, 4))])
def test_sliding_dot_product_shows_the_current_window(step, stride, padding, cell):
    draw_sliding_dot_product(IMAGE, KERNEL, step, stride, padding)
    fig = plt.gcf()
    out = filter_image(IMAGE, KERNEL, stride, padding)
    i, j = cell
    assert fig._suptitle.get_text().startswith(f"out[{i}, {j}] = ")
    assert fig._suptitle.get_text().endswith(f"= {out[i, j]:g}")
    # the output panel writes exactly the numbers computed so far (row-major up to the window)
    written = [t.get_text() for t in fig.axes[2].texts]
    assert written == [f"{v:g}" for v in out.ravel()[:i * out.shape[1] + j + 1]]


@pytest.mark.parametrize("draw", [lambda: draw_sliding_dot_product(IMAGE, KERNEL, 3, 1, 1),
                                  *[lambda name=name: show_kernel(np.ones((40, 40)), name) for name in CLASSIC_KERNELS]])
def test_figures_fit_the_page_with_readable_text(draw):
    draw()
    fig = plt.gcf()
    assert fig.get_size_inches()[0] <= style.MAX_WIDTH
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= style.MIN_FONT_SIZE
    plt.close(fig)


def test_a_signed_kernel_is_drawn_with_the_diverging_map_centred_on_zero():
    draw_sliding_dot_product(IMAGE, KERNEL, 0)
    kernel_image = plt.gcf().axes[1].images[0]
    assert kernel_image.get_cmap().name == style.DIVERGING
    assert kernel_image.get_clim() == (-1.0, 1.0)
    plt.close("all")
