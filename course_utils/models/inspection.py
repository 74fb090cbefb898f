"""Looking inside a PyTorch network: parameters, receptive fields, a layer's output.

Also the two small moves every training and inference function makes: ``unwrap`` (the
model inside ``DistributedDataParallel``) and ``to_device`` (a batch on the device, in
channels-last memory format if asked).
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int]]:
    """``(name, shape, count)`` for every parameter tensor, in order."""
    return [(name, tuple(p.shape), p.numel()) for name, p in model.named_parameters()]


def _as_pair(value) -> int:
    return value[0] if isinstance(value, tuple) else value


def receptive_field(model: nn.Module) -> list[tuple[str, int, int]]:
    """Receptive field after every convolution and pooling layer, in input pixels.

    Walks the layers in registration order (fine for plain stacks like ``SmallCNN``) with
    the recurrence ``r ← r + (k − 1)·j`` and ``j ← j·s``, where ``k`` is the kernel size,
    ``s`` the stride and ``j`` the distance in input pixels between neighbouring outputs.
    Returns ``(layer name, receptive field r, jump j)`` per layer.
    """
    r, j, rows = 1, 1, []
    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _as_pair(layer.kernel_size), _as_pair(layer.stride)
            dilation = _as_pair(getattr(layer, "dilation", 1))
            r += (k - 1) * dilation * j
            j *= s
            rows.append((name, r, j))
    return rows


@torch.no_grad()
def capture_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output of layer, logits)`` when ``model`` sees ``x`` (evaluation mode, no gradients).

    A forward hook copies the layer's output; it is removed in all cases, even if the
    forward pass fails, so the model is left exactly as it was (mode included).
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
    was_training = model.training
    try:
        model.eval()
        logits = model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[-1], logits


def feature_maps(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` when ``model`` sees ``x`` (``capture_output`` without the logits)."""
    return capture_output(model, layer, x)[0]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (or the model itself),
    so that a checkpoint loads without the wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def to_device(x: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """``x`` on ``device``; a batch of images ``(N, C, H, W)`` in the channels-last memory
    format if asked (faster convolutions on many CPUs), with the same values."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
