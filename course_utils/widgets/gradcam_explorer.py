"""Lesson 12's interactive explorer: Grad-CAM of one image, at one layer, for one class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..explain.gradcam import GradCAM, layers_by_depth
from ..explain.overlays import HEAT_CMAP, _as_2d, add_heat_colorbar, overlay
from ..figure_style import figsize


# ------------------------------------------------------------------------------------------
# The interactive explorer's callback (lesson 12)
# ------------------------------------------------------------------------------------------


def explore(model: nn.Module, inputs: torch.Tensor, labels: Sequence[int], classes: Sequence[str],
            index: int = 0, target: str = "predicted", layer: str | None = None, alpha: float = 0.5,
            layers: dict[str, nn.Module] | None = None):
    """Draw image ``index`` of ``inputs``: the MRI, the Grad-CAM map, and the overlay.

    ``target``: a class name, or ``"predicted"`` for the model's own answer. ``layer``: a
    name from ``layers`` (default ``layers_by_depth(model)``; ``None`` = the deepest).
    ``alpha``: the heat map's opacity. Returns the figure (the widget calls this function;
    a test calls it too).
    """
    import matplotlib.pyplot as plt  # here: only when drawing

    layers = layers_by_depth(model) if layers is None else layers
    layer = list(layers)[-1] if layer is None else layer
    if layer not in layers:
        raise ValueError(f"unknown layer {layer!r}; choose one of {list(layers)}")
    if target != "predicted" and target not in classes:
        raise ValueError(f"unknown target {target!r}; choose 'predicted' or one of {list(classes)}")
    x = inputs[index : index + 1]
    with GradCAM(model, layers[layer]) as cam:
        chosen = None if target == "predicted" else list(classes).index(target)
        heat = cam(x, chosen)[0]
        probs = cam.logits.softmax(dim=1)[0]
        low_res = tuple(cam.raw.shape[-2:])
    predicted = int(probs.argmax())
    explained = predicted if chosen is None else chosen
    true = int(labels[index])
    # the page's width, so titles read at full size; the constrained layout keeps room for the
    # colour bar between the map and the overlay
    fig, axes = plt.subplots(1, 3, figsize=figsize(3.4), layout="constrained")
    axes[0].imshow(_as_2d(x[0]), cmap="gray")
    axes[0].set_title(f"image {index}: true {classes[true]}", fontsize=9)
    axes[1].imshow(heat.numpy(), cmap=HEAT_CMAP, vmin=0, vmax=1)
    axes[1].set_title(f"Grad-CAM at {layer} ({low_res[0]}×{low_res[1]})", fontsize=9)
    axes[2].imshow(overlay(x[0], heat, alpha))
    color = "tab:green" if predicted == true else "tab:red"
    axes[2].set_title(f"explaining {classes[explained]} (p={probs[explained]:.2f})\n"
                      f"predicted {classes[predicted]} (p={probs[predicted]:.2f})", fontsize=9, color=color)
    for ax in axes:
        ax.axis("off")
    add_heat_colorbar(fig, axes[1])
    return fig
