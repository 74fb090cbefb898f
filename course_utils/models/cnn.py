"""The small convolutional network of lesson 08, and VGG's block of stacked 3×3 convolutions.

``SmallCNN`` is the lesson-08 network: a stack of conv-BN-ReLU-pool blocks, a global
average pool and a small dense head. Each block doubles the channels (up to a cap) and
halves the image, so the deepest features see almost the whole slice (see
``course_utils.models.inspection.receptive_field``) while the parameters stay few: about a million
with the default widths, under half a million in lesson 08's configuration (``LESSON08_CNN``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


#: The network lesson 08 trains (``SmallCNN(**LESSON08_CNN)``), which the speed benchmarks
#: time too: narrow first blocks, so that an epoch takes seconds on a laptop CPU.
LESSON08_CNN: dict = {"in_channels": 1, "n_classes": 4, "widths": (16, 32, 64, 128, 256),
                      "hidden": 128, "dropout": 0.3}


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution → batch norm → ReLU → 2×2 max pool (halves height and width).

    The convolution has no bias: the batch norm that follows adds its own shift.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def vgg_block(in_channels: int, out_channels: int, convs: int, batch_norm: bool = True) -> nn.Sequential:
    """A VGG block (Simonyan & Zisserman 2015): ``convs`` 3×3 convolutions, each followed by
    a ReLU, then a 2×2 max pool.

    Stacking small kernels is VGG's idea: ``n`` stacked 3×3 convolutions see a
    ``(2n + 1)``-pixel square, as one ``(2n + 1)``×``(2n + 1)`` kernel would, with ``n·9·C²``
    instead of ``(2n + 1)²·C²`` weights (``C`` channels in and out) and ``n`` non-linearities
    instead of one. With ``batch_norm`` (as in ``conv_block``) each convolution drops its bias
    and gets a batch norm before its ReLU; without it this is the original VGG's block.
    """
    if convs < 1:
        raise ValueError(f"a VGG block needs at least one convolution, got convs={convs}")
    layers: list[nn.Module] = []
    for i in range(convs):
        layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3,
                                padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """The lesson-08 CNN: ``len(widths)`` conv blocks, global average pool, dense head.

    Parameters
    ----------
    in_channels: 1 for the grayscale slices.
    n_classes: 4 (glioma, meningioma, notumor, pituitary).
    widths: output channels of each conv block; five blocks shrink 96 px to 3 px.
    hidden: units of the hidden dense layer of the head (0: a single linear layer).
    dropout: drop probability before each dense layer of the head.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4,
                 widths: Sequence[int] = (32, 64, 128, 256, 256), hidden: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, widths=tuple(widths),
                           hidden=hidden, dropout=dropout)
        blocks, channels = [], in_channels
        for width in widths:
            blocks.append(conv_block(channels, width))
            channels = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pool: any input size works
        if hidden:
            self.head = nn.Sequential(
                nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, hidden),
                nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, n_classes),
            )
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` → class scores (logits) ``(N, n_classes)``."""
        return self.head(self.pool(self.features(x)))


def conv_macs(widths: Sequence[int], size: int, kernel: int = 3, in_channels: int = 1) -> int:
    """Multiply-adds of the convolutions of a ``SmallCNN`` with these ``widths`` on one
    ``size`` × ``size`` image (the head's few are left out)."""
    total = 0
    for out_channels in widths:
        total += size * size * kernel * kernel * in_channels * out_channels  # padding 1: size × size positions
        in_channels, size = out_channels, size // 2                          # then the pool halves the image
    return total
