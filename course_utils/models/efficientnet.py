"""EfficientNet by hand: the MBConv block, squeeze-excitation and compound scaling.

``SqueezeExcitation`` and ``MBConv`` below are small, readable versions of the blocks in
torchvision's ``efficientnet_b0``; the tests copy torchvision's weights into them and check
that both give the same outputs. The rest measures the B0…B7 family from torchvision's
architectures (no weights needed, nothing downloaded): parameters, multiply-adds, and the
memory that training must keep for the backward pass.

Compound scaling (Tan & Le, 2019): one coefficient φ scales depth, width and resolution
together, ``d = α^φ``, ``w = β^φ``, ``r = γ^φ``, with α = 1.2, β = 1.1, γ = 1.15 chosen so
that ``α · β² · γ² ≈ 2``: each step of φ roughly doubles the multiply-adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .inspection import count_parameters
from .pretrained import map_state_dict_in_order


# --------------------------------------------------------------------------------------
# The blocks
# --------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Re-weight each channel by a gate computed from the whole image (Hu et al., 2018).

    squeeze: average each channel over the image → a vector of C numbers;
    excite: a tiny two-layer network (C → C_s → C, SiLU then sigmoid) → one gate in (0, 1)
    per channel; scale: multiply every channel of the input by its gate.
    """

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, kernel_size=1)
        self.expand = nn.Conv2d(squeeze_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)                        # (N, C, 1, 1)
        gate = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))
        return x * gate


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                activation: type[nn.Module] | None = nn.SiLU, eps: float = 1e-5) -> nn.Sequential:
    """Convolution (no bias, 'same' size for stride 1) → batch norm → optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=eps),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """The mobile inverted bottleneck of MobileNetV2/EfficientNet, with squeeze-excitation.

    1. expansion: a 1×1 convolution widens ``in_ch`` to ``in_ch · expand_ratio`` channels
       (skipped when the ratio is 1);
    2. depthwise: a k×k convolution with one filter per channel (``groups`` = channels),
       the only layer that looks at neighbouring pixels, and the one that strides;
    3. squeeze-excitation on the wide tensor (``se_ratio`` of the *input* channels);
    4. projection: a 1×1 convolution back down to ``out_ch``, with **no** activation
       (a "linear bottleneck": ReLU-like functions on a narrow tensor destroy information);
    5. skip: when the shapes allow (stride 1, ``in_ch == out_ch``) the input is added back,
       after stochastic depth drops the whole branch at random during training.
    """

    def __init__(self, in_ch: int, out_ch: int, expand_ratio: int, kernel: int, stride: int,
                 se_ratio: float = 0.25, drop_prob: float = 0.0,
                 activation: type[nn.Module] = nn.SiLU, eps: float = 1e-5):
        super().__init__()
        wide = in_ch * expand_ratio
        self.expand = conv_bn_act(in_ch, wide, 1, activation=activation, eps=eps) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn_act(wide, wide, kernel, stride=stride, groups=wide, activation=activation, eps=eps)
        self.se = SqueezeExcitation(wide, max(1, int(in_ch * se_ratio))) if se_ratio else nn.Identity()
        self.project = conv_bn_act(wide, out_ch, 1, activation=None, eps=eps)
        self.use_skip = stride == 1 and in_ch == out_ch
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if not self.use_skip:
            return out
        if self.training and self.drop_prob > 0:  # stochastic depth, one coin per sample
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_prob
            out = out * keep / (1 - self.drop_prob)
        return x + out


def copy_weights_in_order(source: nn.Module, target: nn.Module) -> None:
    """Load ``source``'s weights into ``target`` pairing tensors in order (shapes checked)."""

    target.load_state_dict(map_state_dict_in_order(source.state_dict(), target.state_dict()))


# --------------------------------------------------------------------------------------
# Compound scaling
# --------------------------------------------------------------------------------------

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution (found by grid search at φ = 1)
BASE_RESOLUTION = 224


@dataclass(frozen=True)
class Scaling:
    width: float       # channel multiplier
    depth: float       # layer-count multiplier
    resolution: int    # input size in pixels
    dropout: float     # of the classifier


# The published B0…B7 coefficients (as in the paper's code and torchvision). They follow
# α^φ, β^φ, γ^φ loosely: the authors rounded them, and B7's resolution was set to 600.
EFFICIENTNETS: dict[str, Scaling] = {
    "b0": Scaling(1.0, 1.0, 224, 0.2),
    "b1": Scaling(1.0, 1.1, 240, 0.2),
    "b2": Scaling(1.1, 1.2, 260, 0.3),
    "b3": Scaling(1.2, 1.4, 300, 0.3),
    "b4": Scaling(1.4, 1.8, 380, 0.4),
    "b5": Scaling(1.6, 2.2, 456, 0.4),
    "b6": Scaling(1.8, 2.6, 528, 0.5),
    "b7": Scaling(2.0, 3.1, 600, 0.5),
}


def compound_scale(phi: float | np.ndarray, alpha: float = ALPHA, beta: float = BETA,
                   gamma: float = GAMMA) -> dict[str, float | np.ndarray]:
    """Depth, width and resolution multipliers for compound coefficient ``phi``.

    ``flops`` is the predicted growth of the multiply-adds, ``(α · β² · γ²)^φ``: depth
    multiplies the cost once, width and resolution each enter squared. ``phi`` may be an
    array (one multiplier per value). φ = 0 is B0 itself; compound scaling only grows a
    network, so a negative φ is refused.
    """
    if np.any(np.asarray(phi) < 0):
        raise ValueError(f"compound_scale: phi must be >= 0 (got {phi}); phi = 0 is B0 and each step of "
                         "phi grows the network, so pass a value between 0 and about 7 (B7)")
    return {"depth": alpha ** phi, "width": beta ** phi, "resolution": gamma ** phi,
            "flops": (alpha * beta ** 2 * gamma ** 2) ** phi}


def implied_phi(scaling: Scaling, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> dict[str, float]:
    """The φ that each published multiplier of ``scaling`` implies: ``log(multiplier) / log(base)``.

    The published B1…B7 were rounded, so the three disagree; the resolution's φ
    (relative to 224 px) is the one the lesson uses to place a published model on the φ axis.
    """
    return {"width": math.log(scaling.width) / math.log(beta),
            "depth": math.log(scaling.depth) / math.log(alpha),
            "resolution": math.log(scaling.resolution / BASE_RESOLUTION) / math.log(gamma)}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels after width scaling, rounded to a multiple of 8 (never below 90 %)."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * scaled else int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks in a stage after depth scaling (rounded up)."""
    return int(math.ceil(repeats * depth))


def scaled_stages(stages: list[tuple[int, int]], width: float, depth: float) -> list[tuple[int, int]]:
    """``(channels, blocks)`` of each MBConv stage after scaling a network's ``stages``.

    Channels are rounded by ``round_filters``, block counts by ``round_repeats``, as
    torchvision does when it builds B1…B7 from B0's stages.
    """
    return [(round_filters(channels, width), round_repeats(blocks, depth)) for channels, blocks in stages]


# --------------------------------------------------------------------------------------
# Measuring a network: parameters, multiply-adds, activation memory
# --------------------------------------------------------------------------------------


def torchvision_efficientnet(name: str, device: str | torch.device = "meta") -> nn.Module:
    """torchvision's EfficientNet-``name`` (``"b0"``…``"b7"``) with random weights.

    On the ``meta`` device (the default) tensors have shapes but no memory or values, so
    even B7 builds and runs instantly: enough to count parameters, MACs and activations.
    """
    from torchvision import models  # here: heavy, only when needed

    with torch.device(device):
        return getattr(models, f"efficientnet_{name}")(weights=None)


def stage_shapes(name: str = "b0") -> list[tuple[int, int]]:
    """``(output channels, blocks)`` of the seven MBConv stages of torchvision's EfficientNet-``name``.

    Read from the architecture (built on the meta device, so nothing is allocated), not
    typed in: ``features[1:-1]`` are the stages, between the stem and the 1×1 head.
    """
    model = torchvision_efficientnet(name)
    return [(stage[-1].out_channels, len(stage)) for stage in model.features[1:-1]]


def count_macs(model: nn.Module, resolution: int) -> int:
    """Multiply-adds of one forward pass on one ``resolution``² RGB image.

    Forward hooks on every convolution and linear layer: a convolution costs, per output
    value, ``(in_channels / groups) · k_h · k_w`` multiply-adds; a linear layer
    ``in_features`` per output. (Batch norm, activations and pooling are cheap and left out,
    as in the papers.)
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output):
        nonlocal total
        k_h, k_w = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * k_h * k_w

    def linear_hook(module: nn.Linear, inputs, output):
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, resolution, resolution, device=device))
    finally:
        for h in handles:
            h.remove()
    return total


def activation_bytes(model: nn.Module, resolution: int, batch: int = 32, dtype=torch.float32) -> int:
    """Bytes that autograd stores during one training forward pass (for the backward pass).

    Counts every tensor autograd saves (via ``saved_tensors_hooks``), except the weights
    themselves: layer inputs and outputs, batch-norm statistics, masks, ... Weights,
    gradients and optimizer state come on top; so do the framework's workspaces.
    """
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        if not (t.is_leaf and t.requires_grad):  # a parameter, not an activation
            total += t.numel() * t.element_size()
        return t

    device = next(model.parameters()).device
    model.train()
    x = torch.zeros(batch, 3, resolution, resolution, device=device, dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return total


def scaling_table(batch: int = 32, names=tuple(EFFICIENTNETS), also_at: int | None = 224) -> list[dict]:
    """One row per EfficientNet: scaling, parameters, GMACs and training memory at ``batch``.

    ``act_gb`` is the activation memory at the model's native resolution; ``act_gb_<also_at>``
    the same at ``also_at`` px, for comparison. ``train_gb`` adds the weights, their
    gradients and Adam's two moment buffers (4 copies of the parameters, float32).
    """
    rows = []
    for name in names:
        s = EFFICIENTNETS[name]
        model = torchvision_efficientnet(name)
        params = count_parameters(model, trainable_only=False)
        act = activation_bytes(model, s.resolution, batch)
        row = {"model": f"B{name[1:]}", "width": s.width, "depth": s.depth, "resolution": s.resolution,
               "params_M": params / 1e6, "GMACs": count_macs(model, s.resolution) / 1e9,
               "act_gb": act / 1e9, "train_gb": (act + 4 * 4 * params) / 1e9}
        if also_at:
            row[f"act_gb_{also_at}"] = activation_bytes(model, also_at, batch) / 1e9
        rows.append(row)
    return rows
