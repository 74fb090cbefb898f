"""Grad-CAM and CAM (course_utils.explain.gradcam): equal to the grad-cam library, hooks always
removed, CAM = Grad-CAM where theory says so, and a sanity check that can tell models apart."""

from __future__ import annotations

import gc
import tracemalloc

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from pytorch_grad_cam import GradCAM as LibraryGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torchvision.models import resnet18  # noqa: E402

from course_utils import explain  # noqa: E402
from course_utils.models import SmallCNN  # noqa: E402
from course_utils.models.pretrained import efficientnet_lite0  # noqa: E402
from course_utils.widgets.gradcam_explorer import explore  # noqa: E402


def library_maps(model, layer, x, classes):
    with LibraryGradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in classes])


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18(num_classes=4).eval()


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return efficientnet_lite0(pretrained=True).eval()


def test_equals_grad_cam_library_on_resnet18(resnet):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    classes = [0, 2, 3]
    ours = explain.grad_cam(resnet, resnet.layer4, x, classes)
    theirs = library_maps(resnet, resnet.layer4, x, classes)
    assert ours.shape == theirs.shape == (3, 64, 64)
    assert np.abs(ours.numpy() - theirs).max() < 1e-5
    assert ours.amax(dim=(1, 2)).min() > 0.99 and ours.min() >= 0  # scaled to [0, 1] per image


def test_equals_grad_cam_library_on_course_efficientnet(lite0):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 96, 96)
    classes = [281, 409]
    layer = explain.default_target_layer(lite0)
    assert layer is lite0.features[-1]
    ours = explain.grad_cam(lite0, layer, x, classes)
    theirs = library_maps(lite0, layer, x, classes)
    assert np.abs(ours.numpy() - theirs).max() < 1e-5


def test_default_target_is_predicted_class_and_library_targets_work(resnet):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    predicted = resnet(x).argmax(1).tolist()
    by_default = explain.grad_cam(resnet, resnet.layer4, x)
    explicit = explain.grad_cam(resnet, resnet.layer4, x, predicted)
    library_target = explain.grad_cam(resnet, resnet.layer4, x, [ClassifierOutputTarget(k) for k in predicted])
    assert torch.equal(by_default, explicit) and torch.equal(explicit, library_target)
    other = explain.grad_cam(resnet, resnet.layer4, x, [(k + 1) % 4 for k in predicted])
    assert (other - explicit).abs().max() > 0.05  # another class, another map


def test_hooks_removed_after_use_and_on_error(resnet):
    x = torch.randn(1, 3, 64, 64)
    assert all_hooks(resnet) == 0
    with explain.GradCAM(resnet, resnet.layer4) as cam:
        assert len(resnet.layer4._forward_hooks) == 1
        cam(x, 1)
        cam(x, 2)
        assert len(resnet.layer4._forward_hooks) == 1  # one hook, however many calls
    assert all_hooks(resnet) == 0
    with pytest.raises(ValueError):
        with explain.GradCAM(resnet, resnet.layer4) as cam:
            cam(x, [1, 2])  # two targets for one image
    assert all_hooks(resnet) == 0
    with pytest.raises(RuntimeError, match="released"):
        cam(x, 1)


def test_no_side_effects_on_the_model(resnet):
    resnet.zero_grad(set_to_none=True)  # the library's backward() fills them
    resnet.train()
    x = torch.randn(2, 3, 64, 64)
    explain.grad_cam(resnet, resnet.layer4, x, 0)
    assert resnet.training  # mode restored
    resnet.eval()
    assert all(p.grad is None for p in resnet.parameters())  # only dScore/dA was computed


def test_frozen_model_still_gets_maps():
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    maps = explain.grad_cam(model, model.features[-1], torch.randn(2, 1, 32, 32), 1)
    assert maps.shape == (2, 32, 32) and maps.max() > 0.99


@pytest.fixture
def one_thread():
    """Tiny tensors: thread start-up costs more than the work (and the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_thousand_calls_do_not_leak(one_thread):
    torch.manual_seed(0)
    model = SmallCNN(widths=(4, 8), hidden=0).eval()
    layer = model.features[-1]
    x = torch.randn(2, 1, 16, 16)
    for _ in range(20):  # warm up caches and lazy initialisations
        explain.grad_cam(model, layer, x, 1)
    gc.collect()
    tensors_before = sum(type(o) is torch.Tensor for o in gc.get_objects())
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for i in range(1000):
        explain.grad_cam(model, layer, x, i % 4)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tensors_after = sum(type(o) is torch.Tensor for o in gc.get_objects())
    assert all_hooks(model) == 0
    assert tensors_after - tensors_before <= 2
    assert after - before < 50_000, f"Python memory grew by {after - before} bytes over 1000 calls"


def test_cam_equals_grad_cam_for_gap_linear_network():
    """With global average pooling then one linear layer, α_k = w_k / Z: the same map."""
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16, 32), hidden=0).eval()
    x = torch.randn(4, 1, 48, 48)
    layer, fc = model.features[-1], explain.classifier_of(model)
    for classes in ([0, 1, 2, 3], [3, 3, 0, 1]):
        cam = explain.class_activation_map(model, layer, fc, x, classes)
        grad = explain.grad_cam(model, layer, x, classes)
        assert (cam - grad).abs().max() < 1e-5
    with explain.GradCAM(model, layer) as g:
        g(x, 2)
        expected = fc.weight[2].detach() / g.activations[0, 0].numel()  # w_k / Z
        assert torch.allclose(g.weights, expected.expand_as(g.weights), atol=1e-6)


def test_cam_differs_from_grad_cam_with_a_hidden_layer():
    """The identity needs GAP + linear. With a hidden ReLU layer in the head, the linear map
    W2·W1 (what CAM would use) ignores which hidden units are active: the maps differ."""
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16, 32), hidden=16, dropout=0.0).eval()
    x = torch.randn(4, 1, 48, 48)
    layer = model.features[-1]
    first, second = model.head[2], model.head[5]
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    collapsed = nn.Linear(32, 4)
    with torch.no_grad():
        collapsed.weight.copy_(second.weight @ first.weight)
    cam = explain.class_activation_map(model, layer, collapsed, x, 0)
    grad = explain.grad_cam(model, layer, x, 0)
    assert (cam - grad).abs().max() > 0.05


def test_inplace_change_of_target_output_is_refused():
    torch.manual_seed(0)
    model = SmallCNN(widths=(4, 8), hidden=0).eval()
    batch_norm = model.features[-1][1]  # followed by ReLU(inplace=True)
    with pytest.raises(RuntimeError, match="in place"):
        explain.grad_cam(model, batch_norm, torch.randn(1, 1, 16, 16), 0)
    assert all_hooks(model) == 0


def test_target_layers_per_architecture(resnet, lite0):
    cnn = SmallCNN()
    assert explain.default_target_layer(cnn) is cnn.features[-1]
    assert explain.default_target_layer(resnet) is resnet.layer4
    assert explain.default_target_layer(lite0) is lite0.features[-1]
    assert list(explain.layers_by_depth(cnn)) == [f"block {i}" for i in range(1, 6)]
    cascade = explain.randomization_cascade(resnet)
    assert cascade[0][1] is resnet.fc and cascade[1][1] is resnet.layer4


def test_rank_correlation():
    a = np.array([[1.0, 2, 3, 4], [1, 1, 1, 1]])
    assert np.allclose(explain.rank_correlation(a, a ** 3), [1.0, 0.0])  # monotone: 1; constant: 0
    assert np.isclose(explain.rank_correlation(a[:1], -a[:1])[0], -1.0)


def test_randomization_destroys_maps_of_a_model_and_leaves_it_unchanged():
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16, 32), hidden=0).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 1, 32, 32)
    result = explain.cascading_randomization(model, x, targets=1)
    assert result.steps == ["head", "block 3", "block 2", "block 1"]
    assert result.rank_correlation.shape == (4, 6) and len(result.maps) == 5
    # Re-initialising the head changes the weights α: the maps must change.
    assert result.mean()[0] < 0.9
    assert abs(result.random_baseline.mean()) < 0.3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all_hooks(model) == 0
    fig = result.plot()
    assert len(fig.axes[0].lines) >= 3
    plt.close(fig)


def test_randomization_plot_shows_every_error_bar_whole():
    """A step whose maps barely change (mean near 1) with a wide spread: the bar must not be cut."""
    correlation = np.array([[0.98, 1.0, 0.2, 1.0], [-0.9, -0.2, 0.1, 0.3]])
    result = explain.RandomizationResult(steps=["head", "block 1"], rank_correlation=correlation,
                                         random_baseline=np.zeros(4), other_image_baseline=np.zeros(4), maps=[])
    fig = result.plot()
    low, high = fig.axes[0].get_ylim()
    mean, std = correlation.mean(axis=1), correlation.std(axis=1)
    assert high >= (mean + std).max() and low <= (mean - std).min()
    plt.close(fig)


def test_overlay_keeps_the_mri_visible():
    image = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    heat = np.zeros((64, 64))
    heat[20:30, 20:30] = 1.0
    out = explain.overlay(image * 7 - 3, heat, alpha=0.6)  # standardised input is rescaled
    assert out.shape == (64, 64, 3) and out.min() >= 0 and out.max() <= 1
    assert np.allclose(out[0, 0], image[0, 0]) and np.allclose(out[40, 50], image[40, 50])  # map 0: MRI unchanged
    assert not np.allclose(out[25, 25], image[25, 25])  # map 1: coloured
    with pytest.raises(ValueError):
        explain.overlay(image, np.zeros((8, 8)))


def test_heat_maps_use_a_perceptually_uniform_map_with_a_colour_bar():
    import matplotlib

    cmap = matplotlib.colormaps[explain.HEAT_CMAP]
    # Perceptually ordered: the colours' brightness (Rec. 709 luma) rises with the value.
    rgb = cmap(np.linspace(0, 1, 64))[:, :3]
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luma) > 0), f"{explain.HEAT_CMAP} is not monotonic in brightness"
    jet = matplotlib.colormaps["jet"](np.linspace(0, 1, 64))[:, :3] @ np.array([0.2126, 0.7152, 0.0722])
    assert not np.all(np.diff(jet) > 0)  # the check above can fail: jet would not pass it
    fig = explain.show_overlays(torch.rand(5, 1, 16, 16), torch.rand(5, 16, 16), ["x"] * 5, ncols=3)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == explain.overlays.HEAT_LABEL]
    assert len(bars) == 1 and len(fig.axes) == 6 + 1  # 2×3 panels and one colour bar for all
    plt.close(fig)


def test_explorer_callback():
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16, 32), hidden=0).eval()
    inputs, labels = torch.randn(3, 1, 32, 32), [0, 1, 2]
    classes = ("glioma", "meningioma", "notumor", "pituitary")
    fig = explore(model, inputs, labels, classes, index=1, target="notumor", layer="block 2", alpha=0.3)
    assert len(fig.axes) == 4  # image, map, overlay and the map's colour bar
    assert fig.axes[1].images[0].get_cmap().name == explain.HEAT_CMAP
    assert "map value" in fig.axes[3].get_ylabel()
    assert "explaining notumor" in fig.axes[2].get_title()
    assert "block 2 (8×8)" in fig.axes[1].get_title()
    shown = fig.axes[2].images[0].get_array()
    plt.close(fig)
    fig = explore(model, inputs, labels, classes, index=1, target="notumor", layer="block 2", alpha=0.9)
    assert not np.allclose(shown, fig.axes[2].images[0].get_array())  # opacity acts
    plt.close(fig)
    with pytest.raises(ValueError, match="unknown layer"):
        explore(model, inputs, labels, classes, layer="block 9")
    with pytest.raises(ValueError, match="unknown target"):
        explore(model, inputs, labels, classes, target="astrocytoma")
    assert all_hooks(model) == 0


def test_overlay_grid_fits_the_page():
    """Six panels asked in one row would be 11.4 in wide: the grid wraps at MAX_WIDTH // size."""
    from course_utils.figure_style import MAX_WIDTH, MIN_FONT_SIZE

    fig = explain.show_overlays(torch.rand(6, 1, 16, 16), torch.rand(6, 16, 16), ["x"] * 6, ncols=6)
    width, _ = fig.get_size_inches()
    panels = [ax for ax in fig.axes if ax.images]   # the six overlays (not the bar, not empty cells)
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    assert width <= MAX_WIDTH and len(panels) == 6 and len(rows) == 2, (width, rows)
    assert min(ax.title.get_fontsize() for ax in panels) >= MIN_FONT_SIZE
    plt.close(fig)
