"""CAM and Grad-CAM: which parts of an image a CNN's score for a class depends on.

Both methods look at the feature maps ``A^k`` (``k = 1..K`` channels of size ``u × v``) of
one convolutional layer, weight each channel, add them up and keep the positive part:

* **CAM** (Zhou et al., 2016) needs a network that ends in *global average pooling and one
  linear layer*; the weights are that layer's row for class ``c``:
  ``M^c = Σ_k w^c_k A^k``.
* **Grad-CAM** (Selvaraju et al., 2017) works for any differentiable network and any layer;
  the weight of channel ``k`` is the average gradient of the class score ``y^c`` over the
  map: ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij`` (``Z = u·v``), and
  ``L^c = ReLU(Σ_k α^c_k A^k)``.

For a network that *is* GAP + linear after the layer, ``∂y^c/∂A^k_ij = w^c_k / Z``, so the
two maps are equal up to a positive factor: ``tests/test_gradcam.py`` checks this.

How the activations and gradients are caught: a *forward hook* on the target layer keeps
its output ``A``, and a *tensor hook* (``A.register_hook``) keeps ``∂y/∂A`` when the
backward pass reaches it. Hooks stay on a model until removed, and a forgotten hook keeps
tensors alive and slows every later call, so ``GradCAM`` is a context manager that always
removes its hook, as the ``grad-cam`` library (pytorch-grad-cam) does.

The maps are post-processed exactly like that library's ``GradCAM`` (no smoothing): each
map is scaled to [0, 1] (``(m - min) / (max - min + 1e-7)``), upsampled bilinearly to the
input size, and scaled to [0, 1] again. The course's tests check that both give the same
maps to 1e-5.

Also here: the usual target layer of each architecture the course uses. The overlays are in
``course_utils.explain.overlays``, the model-randomization sanity check of Adebayo et al.
(2018) in ``course_utils.explain.sanity``, lesson 12's explorer in
``course_utils.widgets.gradcam_explorer``; the hook that catches a layer's output in
evaluation mode is ``course_utils.models.inspection.capture_output``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.inspection import capture_output


EPS = 1e-7  # the same small number the grad-cam library adds when scaling maps to [0, 1]

# ------------------------------------------------------------------------------------------
# What to explain: targets
# ------------------------------------------------------------------------------------------


class ClassTarget:
    """Explain the score (logit) of class ``k``: ``target(output) = output[k]``.

    A target is any callable that takes one image's output vector and returns a scalar,
    the quantity whose gradient Grad-CAM follows (same convention as the grad-cam library's
    ``ClassifierOutputTarget``, which also works here).
    """

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.k})"


class SoftmaxTarget(ClassTarget):
    """Explain the *probability* of class ``k`` instead of its logit.

    The probability also rises when the other classes' scores fall, so its map mixes
    "evidence for k" with "evidence against the others".
    """

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.softmax(-1)[..., self.k]


TargetSpec = int | Callable[[torch.Tensor], torch.Tensor]


def as_targets(targets: TargetSpec | Sequence[TargetSpec] | None, logits: torch.Tensor) -> list[Callable]:
    """One target callable per image.

    ``None``: each image's predicted class; an ``int`` (or one callable): the same for every
    image; a sequence: one class index or callable per image.
    """
    n = logits.shape[0]
    if isinstance(targets, (torch.Tensor, np.ndarray)) and targets.ndim == 0:
        targets = int(targets)
    if targets is None:
        targets = logits.argmax(dim=1).tolist()
    elif isinstance(targets, (int, np.integer)) or callable(targets):
        targets = [targets] * n
    targets = list(targets.tolist() if isinstance(targets, (torch.Tensor, np.ndarray)) else targets)
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for a batch of {n} images")
    return [t if callable(t) else ClassTarget(int(t)) for t in targets]


def target_classes(targets: int | Sequence[int] | None, logits: torch.Tensor) -> torch.Tensor:
    """Class indices ``(N,)`` for CAM, which can only explain a class (not any callable)."""
    n = logits.shape[0]
    if targets is None:
        return logits.argmax(dim=1)
    if isinstance(targets, (int, np.integer)):
        return torch.full((n,), int(targets), dtype=torch.long)
    classes = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if classes.shape != (n,):
        raise ValueError(f"{len(classes)} targets for a batch of {n} images")
    return classes


# ------------------------------------------------------------------------------------------
# From raw maps to displayable maps
# ------------------------------------------------------------------------------------------


def normalize_maps(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale each map of a batch ``(N, H, W)`` to [0, 1]: ``(m - min) / (max - min + eps)``.

    Each image gets its own scale, so maps show *where* within an image, never *how much*
    compared with another image. A constant map becomes all zeros.
    """
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return shifted / (eps + shifted.amax(dim=(-2, -1), keepdim=True))


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(N, h, w)`` maps to ``size = (H, W)`` (pixel centres aligned,
    like OpenCV's ``cv2.resize``, which the grad-cam library uses)."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def finish_maps(raw: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """ReLU, scale to [0, 1], upsample to ``size`` (if given), scale to [0, 1] again.

    The second scaling is needed because bilinear upsampling averages neighbours and so
    rarely reproduces the exact minimum and maximum.
    """
    maps = normalize_maps(torch.relu(raw.float()))
    if size is None:
        return maps
    return normalize_maps(upsample_maps(maps, size))


# ------------------------------------------------------------------------------------------
# Grad-CAM with hooks
# ------------------------------------------------------------------------------------------


class GradCAM:
    """Grad-CAM on one target layer of ``model``, for a batch of images.

    Use it as a context manager so the hook is removed whatever happens::

        with GradCAM(model, model.features[-1]) as cam:
            maps = cam(x, targets=2)          # (N, H, W) in [0, 1], explaining class 2

    After a call, ``activations`` (``A``, ``(N, K, u, v)``), ``gradients`` (``∂y/∂A``),
    ``weights`` (``α``, ``(N, K)``), ``raw`` (the map before ReLU and scaling, ``(N, u, v)``)
    and ``logits`` hold what the map was made of.

    The model is put in evaluation mode for the call (dropout off, batch norm with its
    running statistics) and returned to its previous mode afterwards. Only the gradient
    with respect to ``A`` is computed (``backward(inputs=[A])``): the parameters' ``.grad``
    are left untouched, and frozen models work too.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module):
        self.model = model
        self.target_layer = target_layer
        self.activations: torch.Tensor | None = None
        self.gradients: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.raw: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self._output: torch.Tensor | None = None  # the live activation, during a call only
        self._version = 0
        self._handle = target_layer.register_forward_hook(self._keep_activation)

    # -- the two hooks ---------------------------------------------------------------------

    def _keep_activation(self, module: nn.Module, inputs, output) -> None:
        """Forward hook: remember the layer's output and hook its gradient."""
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the target layer must return one tensor, not {type(output).__name__}")
        self._output = output
        self._version = output._version
        if output.requires_grad:
            output.register_hook(self._keep_gradient)

    def _keep_gradient(self, grad: torch.Tensor) -> None:
        """Tensor hook: called with ``∂(score)/∂A`` when the backward pass reaches ``A``."""
        self.gradients = grad.detach()

    # -- the computation -------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, targets: TargetSpec | Sequence[TargetSpec] | None = None,
                 upsample: bool = True) -> torch.Tensor:
        """Grad-CAM maps ``(N, H, W)`` in [0, 1] for the images ``x`` ``(N, C, H, W)``.

        ``targets``: ``None`` (explain each image's predicted class), a class index, a
        target callable, or one of those per image. ``upsample=False`` returns the maps at
        the layer's own resolution ``(N, u, v)``.
        """
        if self._handle is None:
            raise RuntimeError("this GradCAM was released; create a new one")
        was_training = self.model.training
        self.model.eval()
        self._output, self.gradients = None, None
        try:
            with torch.enable_grad():
                # A leaf that requires gradients: the graph then reaches A even when every
                # parameter is frozen (requires_grad=False).
                x = x.detach().requires_grad_(True)
                logits = self.model(x)
                if self._output is None:
                    raise RuntimeError("the target layer was not used in the forward pass")
                if self._output._version != self._version:
                    raise RuntimeError(
                        "a later layer changed the target layer's output in place (an "
                        "inplace=True activation?); choose the module that contains it, e.g. "
                        "the whole block, as the target layer")
                score = torch.stack([t(row) for t, row in zip(as_targets(targets, logits), logits)]).sum()
                torch.autograd.backward(score, inputs=[self._output])
            activations = self._output.detach()
        finally:
            self._output = None  # drop the graph
            self.model.train(was_training)
        self.activations, self.logits = activations, logits.detach()
        self.weights = self.gradients.mean(dim=(2, 3))                           # α, (N, K)
        self.raw = (self.weights[:, :, None, None] * activations).sum(dim=1)    # Σ_k α_k A^k
        return finish_maps(self.raw, tuple(x.shape[-2:]) if upsample else None)

    # -- the hook's lifecycle ------------------------------------------------------------------

    def release(self) -> None:
        """Remove the hook and forget the stored tensors (safe to call twice)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._output = self.activations = self.gradients = self.weights = self.raw = None

    def __enter__(self) -> "GradCAM":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.remove()


def grad_cam(model: nn.Module, target_layer: nn.Module, x: torch.Tensor,
             targets: TargetSpec | Sequence[TargetSpec] | None = None, upsample: bool = True) -> torch.Tensor:
    """Grad-CAM maps in one call: ``(N, H, W)`` in [0, 1]. The hook never outlives it."""
    with GradCAM(model, target_layer) as cam:
        return cam(x, targets, upsample)


def class_activation_map(model: nn.Module, target_layer: nn.Module, classifier: nn.Linear, x: torch.Tensor,
                         targets: int | Sequence[int] | None = None, upsample: bool = True) -> torch.Tensor:
    """CAM (Zhou et al., 2016): ``ReLU(Σ_k w^c_k A^k)``, scaled and upsampled like Grad-CAM.

    Valid only when ``target_layer`` is followed by global average pooling and then
    ``classifier`` alone (ResNet's ``layer4 → avgpool → fc``; EfficientNet's
    ``features → avgpool → classifier``). No gradients are needed: the linear layer's
    weights say how much each channel counts for each class.
    """
    activations, logits = capture_output(model, target_layer, x)
    if activations.shape[1] != classifier.in_features:
        raise ValueError(f"the layer has {activations.shape[1]} channels but the classifier expects "
                         f"{classifier.in_features} features: CAM needs layer → global average pool → linear")
    weights = classifier.weight.detach()[target_classes(targets, logits)]          # (N, K)
    raw = torch.einsum("nk,nkhw->nhw", weights, activations)
    return finish_maps(raw, tuple(x.shape[-2:]) if upsample else None)


# ------------------------------------------------------------------------------------------
# Which layer? The usual choice per architecture, and candidates at several depths
# ------------------------------------------------------------------------------------------


def layers_by_depth(model: nn.Module) -> dict[str, nn.Module]:
    """Candidate target layers from shallow to deep, with readable names.

    SmallCNN (lesson 08): each conv block; torchvision ResNet: ``layer1`` … ``layer4``;
    EfficientNet: each stage ``features[i]``; the course's ``SmallResNet``/``PlainNet``:
    the stem and each block.
    """
    if hasattr(model, "layer4"):  # torchvision ResNet
        return {name: getattr(model, name) for name in ("layer1", "layer2", "layer3", "layer4")}
    if hasattr(model, "blocks") and hasattr(model, "stem"):  # course_utils.models.resnet.StagedNet
        return {"stem": model.stem, **{f"block {i + 1}": b for i, b in enumerate(model.blocks)}}
    if isinstance(getattr(model, "features", None), nn.Sequential):
        if hasattr(model, "classifier"):  # torchvision EfficientNet: features[i] are stages
            return {f"features[{i}]": layer for i, layer in enumerate(model.features)}
        return {f"block {i + 1}": layer for i, layer in enumerate(model.features)}  # SmallCNN
    raise ValueError(f"no known target layers for {type(model).__name__}; pass a layer explicitly")


def default_target_layer(model: nn.Module) -> nn.Module:
    """The usual Grad-CAM layer: the last convolutional stage, before global pooling.

    It has the most class-specific features while keeping some spatial layout:
    SmallCNN ``features[-1]`` (its last conv block), ResNet ``layer4``, EfficientNet
    ``features[-1]`` (the final 1×1 convolution to 1280 channels).
    """
    return list(layers_by_depth(model).values())[-1]


def classifier_of(model: nn.Module) -> nn.Linear:
    """The final linear layer (for CAM): ``fc`` (ResNet), ``classifier[-1]`` (EfficientNet),
    the last ``nn.Linear`` of ``head`` (SmallCNN, SmallResNet)."""
    for name in ("fc", "classifier", "head"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Linear):
            return part
        if isinstance(part, nn.Module):
            linears = [m for m in part.modules() if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1]
    raise ValueError(f"no final linear layer found in {type(model).__name__}")
