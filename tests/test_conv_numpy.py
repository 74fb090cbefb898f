"""The NumPy convolution and pooling layers equal PyTorch's, forward and backward."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.numpy_nn.conv import (avg_pool_backward, avg_pool_forward, col2im, conv2d_backward,
                                        conv2d_backward_as_convolutions, conv2d_forward, conv2d_naive,
                                        dilate, im2col, max_pool_backward, max_pool_forward, output_size)
from course_utils.numpy_nn.gradcheck import numerical_gradient_array, rel_error

# (H, W, kernel h, kernel w, stride, padding): square and not, strides that do and do not
# divide evenly, padding larger than the kernel's half, a 1x1 kernel.
CONV_CASES = [
    (7, 7, 3, 3, 1, 0),
    (7, 7, 3, 3, 1, 1),
    (8, 7, 3, 3, 2, 1),
    (9, 6, 2, 2, 3, 2),
    (6, 9, 3, 2, 2, 0),
    (5, 5, 5, 5, 1, 2),
    (6, 6, 1, 1, 1, 0),
    (10, 10, 4, 4, 3, 1),
]
POOL_CASES = [(2, None), (2, 1), (3, 2), (3, 3)]


def conv_inputs(H, W, kh, kw, seed=0, N=2, C=3, F_out=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, C, H, W)), rng.normal(size=(F_out, C, kh, kw)), rng.normal(size=F_out)


def torch_conv(x, w, b, stride, padding, dout):
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("size, kernel, stride, padding, expected", [
    (5, 3, 1, 0, 3), (5, 3, 1, 1, 5), (5, 3, 2, 1, 3), (7, 3, 2, 0, 3), (8, 3, 2, 0, 3),
    (224, 7, 2, 3, 112), (32, 2, 2, 0, 16), (6, 1, 1, 0, 6), (4, 5, 1, 1, 2),
])
def test_output_size_hand_cases(size, kernel, stride, padding, expected):
    assert output_size(size, kernel, stride, padding) == expected


def test_output_size_rejects_kernels_that_do_not_fit():
    with pytest.raises(ValueError):
        output_size(3, 5, 1, 0)
    with pytest.raises(ValueError):
        output_size(5, 3, 0, 0)


@pytest.mark.parametrize("H, W, kh, kw, stride, padding", CONV_CASES)
def test_conv2d_equals_torch_forward_and_backward(H, W, kh, kw, stride, padding):
    x, w, b = conv_inputs(H, W, kh, kw)
    out, cache = conv2d_forward(x, w, b, stride, padding)
    assert out.shape == (2, 4, output_size(H, kh, stride, padding), output_size(W, kw, stride, padding))
    dout = np.random.default_rng(1).normal(size=out.shape)
    t_out, t_dx, t_dw, t_db = torch_conv(x, w, b, stride, padding, dout)
    dx, dw, db = conv2d_backward(dout, cache)
    np.testing.assert_allclose(out, t_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, t_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, t_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, t_db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H, W, kh, kw, stride, padding", CONV_CASES)
def test_naive_conv2d_equals_vectorised(H, W, kh, kw, stride, padding):
    x, w, b = conv_inputs(H, W, kh, kw, seed=2)
    np.testing.assert_allclose(conv2d_naive(x, w, b, stride, padding),
                               conv2d_forward(x, w, b, stride, padding)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H, W, kh, kw, stride, padding", CONV_CASES)
def test_backward_as_two_convolutions_equals_backward(H, W, kh, kw, stride, padding):
    x, w, b = conv_inputs(H, W, kh, kw, seed=3)
    out, cache = conv2d_forward(x, w, b, stride, padding)
    dout = np.random.default_rng(4).normal(size=out.shape)
    for mine, textbook in zip(conv2d_backward(dout, cache),
                              conv2d_backward_as_convolutions(dout, x, w, stride, padding)):
        np.testing.assert_allclose(mine, textbook, rtol=1e-12, atol=1e-12)


def test_conv2d_gradient_check():
    x, w, b = conv_inputs(6, 5, 3, 3, seed=5, N=2, C=2, F_out=3)
    stride, padding = 2, 1
    dout = np.random.default_rng(6).normal(size=(2, 3, output_size(6, 3, 2, 1), output_size(5, 3, 2, 1)))

    def out() -> np.ndarray:
        return conv2d_forward(x, w, b, stride, padding)[0]

    dx, dw, db = conv2d_backward(dout, conv2d_forward(x, w, b, stride, padding)[1])
    for analytic, param in ((dx, x), (dw, w), (db, b)):
        assert rel_error(analytic, numerical_gradient_array(out, param, dout)) < 1e-8


def test_im2col_rows_are_windows_and_col2im_is_its_adjoint():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 6, 5))
    cols = im2col(x, 3, 2, stride=2, padding=1)
    assert cols.shape == (2 * 3 * 3, 3 * 3 * 2)
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    # row for image 1, output position (2, 1): window starting at (4, 2) of the padded image
    np.testing.assert_array_equal(cols[1 * 9 + 2 * 3 + 1], x_pad[1, :, 4:7, 2:4].ravel())
    # <im2col(x), y> == <x, col2im(y)> for every x, y: col2im is im2col's transpose
    y = rng.normal(size=cols.shape)
    assert np.isclose(np.sum(cols * y), np.sum(x * col2im(y, x.shape, 3, 2, 2, 1)), rtol=1e-12)


def test_dilate_inserts_zeros():
    d = np.arange(1, 5, dtype=float).reshape(1, 1, 2, 2)
    expected = np.array([[1, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]], dtype=float)
    np.testing.assert_array_equal(dilate(d, 3)[0, 0], expected)
    assert dilate(d, 1) is d


def test_hand_worked_example():
    """The 5x5 image and 3x3 kernel of the lesson, computed by hand."""
    image = np.array([[1, 2, 0, 1, 3], [0, 1, 2, 3, 1], [1, 0, 1, 2, 2], [2, 1, 0, 1, 0], [0, 2, 1, 0, 1]], float)
    kernel = np.array([[1, 0, -1]] * 3, float)
    out = conv2d_naive(image[None, None], kernel[None, None])[0, 0]
    # out[0, 0] = (1 - 0) + (0 - 2) + (1 - 1) = -1
    assert out[0, 0] == -1
    assert out.shape == (3, 3)


@pytest.mark.parametrize("size, stride", POOL_CASES)
def test_max_pool_equals_torch(size, stride):
    x = np.random.default_rng(8).normal(size=(2, 3, 9, 8))
    out, cache = max_pool_forward(x, size, stride)
    dout = np.random.default_rng(9).normal(size=out.shape)
    xt = torch.tensor(x, requires_grad=True)
    t_out = F.max_pool2d(xt, size, stride)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(max_pool_backward(dout, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, stride", POOL_CASES)
def test_avg_pool_equals_torch(size, stride):
    x = np.random.default_rng(10).normal(size=(2, 3, 9, 8))
    out, cache = avg_pool_forward(x, size, stride)
    dout = np.random.default_rng(11).normal(size=out.shape)
    xt = torch.tensor(x, requires_grad=True)
    t_out = F.avg_pool2d(xt, size, stride)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(avg_pool_backward(dout, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_gradient_check(pool):
    forward, backward = {"max": (max_pool_forward, max_pool_backward),
                         "avg": (avg_pool_forward, avg_pool_backward)}[pool]
    x = np.random.default_rng(12).normal(size=(2, 2, 7, 6))
    out, cache = forward(x, 3, 2)
    dout = np.random.default_rng(13).normal(size=out.shape)
    numeric = numerical_gradient_array(lambda: forward(x, 3, 2)[0], x, dout)
    assert rel_error(backward(dout, cache), numeric) < 1e-8


def test_max_pool_sends_gradient_only_to_the_winner():
    x = np.array([[[[1, 5], [3, 2]]]], dtype=float)
    out, cache = max_pool_forward(x, 2)
    assert out[0, 0, 0, 0] == 5
    np.testing.assert_array_equal(max_pool_backward(np.ones((1, 1, 1, 1)), cache)[0, 0], [[0, 1], [0, 0]])
