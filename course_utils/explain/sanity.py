"""Sanity check for saliency maps: cascading model randomization (Adebayo et al., 2018).

Re-initialise the layers from the top down and see whether the maps change: maps that
survive randomization show the input (edges, bright regions), not what the model learned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .gradcam import GradCAM, default_target_layer, finish_maps, grad_cam, layers_by_depth, target_classes


# ------------------------------------------------------------------------------------------
# Sanity check: cascading model randomization (Adebayo et al., 2018)
# ------------------------------------------------------------------------------------------


def randomization_cascade(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's parts from the output back to the input, in the order they are re-initialised.

    The head first, then each stage (the same stages as ``layers_by_depth``, deepest first),
    then, for ResNets, the stem.
    """
    if hasattr(model, "layer4"):
        head = [("fc", model.fc)]
        stem = [("stem (conv1, bn1)", nn.ModuleList([model.conv1, model.bn1]))]
    elif hasattr(model, "classifier"):
        head, stem = [("classifier", model.classifier)], []
    elif hasattr(model, "head"):
        head, stem = [("head", model.head)], []
    else:
        raise ValueError(f"no known head in {type(model).__name__}")
    stages = list(layers_by_depth(model).items())[::-1]
    return head + stages + stem


def reinitialize(module: nn.Module, seed: int = 0) -> None:
    """Give ``module`` fresh random weights, as at construction (``reset_parameters``).

    Batch-norm layers also forget their running statistics. The global random state is not
    disturbed (``torch.random.fork_rng``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


def rank_correlation(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation between the maps ``a[i]`` and ``b[i]``, one value per map.

    Ties get their average rank. A constant map shares no ordering with anything: 0.
    """
    from scipy.stats import rankdata  # here: heavy, only when needed

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    out = np.zeros(len(a))
    np.divide((ra * rb).sum(1), denominator, out=out, where=denominator > 0)
    return out


def _module_name(model: nn.Module, module: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


@dataclass
class RandomizationResult:
    """Outcome of ``cascading_randomization``.

    ``steps[l]`` names the part re-initialised at step ``l`` (all earlier ones stay random);
    ``rank_correlation[l, i]`` is the Spearman correlation between image ``i``'s original map
    and its map after step ``l``; ``maps[0]`` are the original maps, ``maps[l + 1]`` those
    after step ``l``. Baselines: ``random_baseline`` compares each original map with a map
    of random numbers of the same resolution, upsampled the same way;
    ``other_image_baseline`` with the original map of another image (what any two maps of
    this model share, e.g. a preference for the centre).
    """

    steps: list[str]
    rank_correlation: np.ndarray
    random_baseline: np.ndarray
    other_image_baseline: np.ndarray
    maps: list[torch.Tensor] = field(repr=False)

    def mean(self) -> np.ndarray:
        return self.rank_correlation.mean(axis=1)

    def plot(self, ax=None, title: str | None = None):
        """Mean rank correlation (± one standard deviation) against the randomized depth."""
        import matplotlib.pyplot as plt  # here: only when drawing

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.6))
        x = np.arange(len(self.steps))
        mean, std = self.mean(), self.rank_correlation.std(axis=1)
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label="Grad-CAM after randomization")
        for values, style, label in ((self.random_baseline, "--", "random map"),
                                     (self.other_image_baseline, ":", "another image's map")):
            ax.axhline(values.mean(), color="gray", ls=style, label=f"baseline: {label}")
        ax.set_xticks(x, ["+ " + s if i else s for i, s in enumerate(self.steps)], rotation=35, ha="right", fontsize=8)
        # room for every error bar: mean + sd can pass 1 where the maps of some images barely change
        ax.set_ylim(min(-0.5, float((mean - std).min()) - 0.05), max(1.05, float((mean + std).max()) + 0.05))
        ax.set_xlabel("re-initialised, cumulatively from the output")
        ax.set_ylabel("Spearman rank correlation\nwith the original map")
        ax.set_title(title or "Model-randomization sanity check")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax.figure


def cascading_randomization(model: nn.Module, x: torch.Tensor, targets: int | Sequence[int] | None = None,
                            target_layer: nn.Module | None = None,
                            cascade: list[tuple[str, nn.Module]] | None = None,
                            seed: int = 0) -> RandomizationResult:
    """Adebayo et al.'s sanity check: does the map depend on what the model learned?

    Re-initialise the parts in ``cascade`` (default ``randomization_cascade(model)``)
    one after another, from the output down, keeping earlier ones random, and recompute the
    Grad-CAM maps for the same images and the same target classes (default: the original
    predictions). A method that explains the *model* must produce maps that drift away
    from the originals; maps that survive randomization show the input (edges, bright
    regions), not the model. ``model`` itself is never changed: the work is done on a copy.
    """
    target_layer = default_target_layer(model) if target_layer is None else target_layer
    cascade = randomization_cascade(model) if cascade is None else cascade
    layer_name = _module_name(model, target_layer)
    names = [_module_name(model, m) for _, m in cascade]
    if layer_name is None or None in names:
        raise ValueError("the target layer and every part of the cascade must be sub-modules of the model")
    with torch.no_grad():
        was_training = model.training
        logits = model.eval()(x)
        model.train(was_training)
    classes = target_classes(targets, logits).tolist()
    original = grad_cam(model, target_layer, x, classes)
    copy_ = copy.deepcopy(model)
    layer_in_copy = copy_.get_submodule(layer_name)
    maps, correlations = [original], []
    for step, name in enumerate(names):
        reinitialize(copy_.get_submodule(name), seed=seed + step)
        randomized = grad_cam(copy_, layer_in_copy, x, classes)
        maps.append(randomized)
        correlations.append(rank_correlation(original, randomized))
    generator = torch.Generator().manual_seed(seed)
    with GradCAM(model, target_layer) as cam:
        cam(x[:1], classes[:1], upsample=False)
        low_res = cam.raw.shape[-2:]
    noise = torch.rand((len(x), *low_res), generator=generator)
    random_maps = finish_maps(noise, tuple(x.shape[-2:]))
    return RandomizationResult(
        steps=[s for s, _ in cascade],
        rank_correlation=np.array(correlations),
        random_baseline=rank_correlation(original, random_maps),
        other_image_baseline=rank_correlation(original, original.roll(1, dims=0)) if len(x) > 1 else np.zeros(1),
        maps=maps,
    )
