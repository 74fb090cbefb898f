"""Residual networks (He et al. 2016) and their plain twins, small enough for a CPU.

A *residual block* computes ``y = relu(F(x) + shortcut(x))``, where ``F`` is two 3×3
convolutions. When the block keeps the shape, the shortcut is the identity, so the block only
has to learn the *change* ``F(x) = y - x``, and the backward pass gets an identity term:
``dy/dx = I + dF/dx``. When the block changes the number of channels or halves the
resolution, the shortcut is a *projection*: a 1×1 convolution with the same stride (plus
batch norm), the cheapest map that gives ``x`` the shape of ``F(x)``.

A *plain block* is the same two convolutions without the shortcut. ``SmallResNet`` and
``PlainNet`` are built by one function from the same stages, so at equal settings they have
the same layers and the same number of parameters except for the projection shortcuts: the
only difference is the skip connections. That is what lesson 09 compares.

``layer_gradient_norms`` measures, after one backward pass, the gradient norm of every
convolution's weight, from the input side to the output side: the quantity that shows
gradients vanishing in a deep plain network and not in its residual twin.

``recalibrate_batch_norm`` recomputes the batch-norm statistics of a trained network on
clean images ("precise BN"), the statistics that evaluation mode uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import torch
from torch import nn
from torch.nn import functional as F

from .inspection import to_device


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """A 3×3 convolution with padding 1: keeps the size at stride 1, halves it at stride 2."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=bias)


def norm_layer(channels: int, batch_norm: bool) -> nn.Module:
    """``BatchNorm2d`` when asked for, otherwise the identity (a network without batch norm)."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class PlainBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN → ReLU, without a shortcut.

    ``stride=2`` on the first convolution halves the resolution. Without batch norm the
    convolutions get a bias instead (batch norm's shift makes a bias redundant).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, batch_norm: bool = True):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride, bias=not batch_norm)
        self.bn1 = norm_layer(out_ch, batch_norm)
        self.conv2 = conv3x3(out_ch, out_ch, 1, bias=not batch_norm)
        self.bn2 = norm_layer(out_ch, batch_norm)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The two convolutions, ``F(x)`` (before the final ReLU)."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x))


class BasicBlock(PlainBlock):
    """The ResNet basic block: ``relu(F(x) + shortcut(x))``.

    The shortcut is the identity when the shape is kept (``in_ch == out_ch`` and
    ``stride == 1``), otherwise a projection: 1×1 convolution with the block's stride,
    followed by batch norm (when the block uses batch norm).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, batch_norm: bool = True):
        super().__init__(in_ch, out_ch, stride, batch_norm)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=not batch_norm),
                norm_layer(out_ch, batch_norm),
            )

    @property
    def is_projection(self) -> bool:
        return not isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class StagedNet(nn.Module):
    """Stem → stages of blocks → global average pool → linear classifier.

    * stem: conv3×3 (``in_channels`` → ``widths[0]``) → BN → ReLU, then a 2×2 max-pool when
      ``stem_pool`` (cheap: it quarters the work of everything after it);
    * stage ``s`` has ``blocks[s]`` blocks of width ``widths[s]``; every stage after the first
      starts with a stride-2 block that halves the resolution and changes the width;
    * the head averages each channel over the image and maps the result to ``n_classes`` logits.

    ``block`` is ``BasicBlock`` (a residual network) or ``PlainBlock`` (its plain twin).
    The number of weighted layers is ``1 + 2 * sum(blocks) + 1``, not counting projections.
    """

    def __init__(self, block: type[PlainBlock], in_channels: int = 1, n_classes: int = 4,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: int | Sequence[int] = 1,
                 batch_norm: bool = True, stem_pool: bool = True):
        super().__init__()
        widths = tuple(widths)
        blocks = (blocks,) * len(widths) if isinstance(blocks, int) else tuple(blocks)
        if len(blocks) != len(widths):
            raise ValueError(f"blocks {blocks} and widths {widths} must have the same length")
        # Enough to rebuild the network from a checkpoint: type(model)(**model.config).
        self.config = dict(in_channels=in_channels, n_classes=n_classes, widths=widths,
                           blocks=blocks, batch_norm=batch_norm, stem_pool=stem_pool)
        self.stem = nn.Sequential(
            conv3x3(in_channels, widths[0], bias=not batch_norm),
            norm_layer(widths[0], batch_norm),
            nn.ReLU(),
            nn.MaxPool2d(2) if stem_pool else nn.Identity(),
        )
        layers = []
        in_ch = widths[0]
        for s, (width, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                layers.append(block(in_ch, width, stride, batch_norm))
                in_ch = width
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, n_classes)
        self.depth = 2 + 2 * sum(blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps, before pooling (the usual Grad-CAM target)."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class SmallResNet(StagedNet):
    """A small residual network; see ``StagedNet`` for the layout.

    ``SmallResNet(blocks=1)`` (the default) has 10 weighted layers; ``blocks=(2, 2, 2, 2)``
    is laid out like ResNet-18, narrower, for 1-channel MRI slices.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: int | Sequence[int] = 1,
                 batch_norm: bool = True, stem_pool: bool = True):
        super().__init__(BasicBlock, in_channels, n_classes, widths, blocks, batch_norm, stem_pool)


class PlainNet(StagedNet):
    """The plain twin of ``SmallResNet``: the same layers, without the skip connections."""

    def __init__(self, in_channels: int = 1, n_classes: int = 4,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: int | Sequence[int] = 1,
                 batch_norm: bool = True, stem_pool: bool = True):
        super().__init__(PlainBlock, in_channels, n_classes, widths, blocks, batch_norm, stem_pool)


def main_path_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's 3×3 convolutions in forward order (projection shortcuts left out).

    These are the layers a signal must pass through one after another in a plain network;
    their index is the layer's depth.
    """
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         loss_fn=None) -> list[tuple[str, float]]:
    """One forward and backward pass on ``(x, y)``; the weight-gradient norm of every 3×3 conv.

    Returns ``[(layer name, ||dL/dW||), ...]`` from the input side to the output side.
    The model's parameters are not changed (their ``.grad`` is cleared before and after).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = [(name, conv.weight.grad.norm().item()) for name, conv in main_path_convs(model)]
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, loader, device: torch.device | str = "cpu",
                           channels_last: bool = False, batches: int | None = None) -> nn.Module:
    """Recompute every batch-norm layer's running mean and variance on ``loader``, in place.

    During training, the running averages that evaluation mode uses are exponential averages
    (momentum 0.1) of the statistics of *augmented* batches, collected while the weights were
    still changing. With the final weights fixed, one pass over clean training images in
    training mode, with ``momentum=None`` (an equal-weight average over the batches), gives
    statistics that match the images evaluation will see ("precise BN", Wu and Johnson 2021).
    Only the batch-norm buffers change, never a weight. ``batches`` limits the pass to that
    many batches (all of ``loader`` by default). Returns the model, in the mode it had.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x, _ in islice(loader, batches):
        model(to_device(x, device, channels_last))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.train(was_training)
