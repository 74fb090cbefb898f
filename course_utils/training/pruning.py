"""Pruning a trained network, by hand: magnitude masks, retraining that keeps zeros zero,
channel pruning that makes the network physically smaller, and how to measure size and speed.

Two kinds of pruning, taught in lesson 14:

* **Unstructured (magnitude) pruning** (Han et al., 2015) sets the individual weights with
  the smallest absolute values to zero. A *mask* per weight tensor (``True`` = keep) records
  which ones; the masks are re-applied after every optimizer step while the network
  retrains, so pruned weights stay exactly zero. The tensors keep their shape: a dense
  kernel still multiplies the zeros, so the network is no faster, only more compressible.
* **Structured (channel) pruning** (Li et al., 2017) removes whole convolution filters, the
  ones with the smallest L1 norm, and builds a narrower ``SmallCNN`` from the weights that
  remain (the convolution, its batch norm and the next layer's input channels). Every
  tensor shrinks, so the network is faster on any hardware.

Only the weights of convolutions and linear layers are pruned; biases and batch-norm
parameters are few and stay.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.cnn import SmallCNN
from .loop import fit


PRUNABLE_LAYERS = (nn.Conv2d, nn.Linear)
SCOPES = ("global", "layer")


# --------------------------------------------------------------------------------------
# Unstructured magnitude pruning
# --------------------------------------------------------------------------------------


def check_fraction(value: float, name: str = "sparsity") -> float:
    """``value`` as a float if it is a share in [0, 1), else a ``ValueError`` naming ``name``."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    return float(value)


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight tensor of every convolution and linear layer, by parameter name."""
    return {f"{name}.weight" if name else "weight": module.weight
            for name, module in model.named_modules() if isinstance(module, PRUNABLE_LAYERS)}


def _smallest_removed(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A flat keep-mask that removes exactly ``round(sparsity · n)`` of the smallest scores.

    Ties (for instance weights that are already zero) are broken by position, so the count
    is exact whatever the values.
    """
    n_removed = int(round(sparsity * scores.numel()))
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    keep[torch.argsort(scores, stable=True)[:n_removed]] = False
    return keep


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Keep-masks (``True`` = keep) that remove the ``sparsity`` share of smallest |weights|.

    ``scope="global"`` ranks all convolution and linear weights together, so layers with
    many small weights lose more of them; ``scope="layer"`` removes the same share from
    every layer. The model is not changed: see ``apply_masks``.
    """
    check_fraction(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    weights = prunable_weights(model)
    if scope == "layer":
        return {name: _smallest_removed(w.detach().abs().flatten(), sparsity).view(w.shape)
                for name, w in weights.items()}
    scores = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = _smallest_removed(scores, sparsity).split([w.numel() for w in weights.values()])
    return {name: k.view(w.shape) for (name, w), k in zip(weights.items(), keep)}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set every weight whose mask is ``False`` to zero, in place."""
    parameters = dict(model.named_parameters())
    for name, keep in masks.items():
        parameters[name].masked_fill_(~keep.to(parameters[name].device), 0.0)


def prune_one_shot(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to ``sparsity`` in one step; returns the masks (for retraining)."""
    masks = magnitude_masks(model, sparsity, scope)
    apply_masks(model, masks)
    return masks


def iterative_schedule(sparsity: float, steps: int) -> list[float]:
    """A schedule of ``steps`` rounds that ends at ``sparsity``, each round removing the same
    share of the weights still left: ``s_i = 1 − (1 − s)^(i / steps)``."""
    check_fraction(sparsity)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps!r}")
    return [1 - (1 - sparsity) ** (i / steps) for i in range(1, steps)] + [sparsity]


def prune_iteratively(model: nn.Module, schedule: Sequence[float],
                      retrain: Callable[[nn.Module, dict[str, torch.Tensor]], object] | None = None,
                      scope: str = "global",
                      after_prune: Callable[[int, float, nn.Module], object] | None = None,
                      after_retrain: Callable[[int, float, nn.Module], object] | None = None,
                      ) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place in rounds of prune → retrain, round ``i`` to ``schedule[i]``.

    ``schedule`` is a non-decreasing list of sparsities, e.g. ``[0.3, 0.5, 0.7, 0.9]`` or
    ``iterative_schedule(0.9, steps=4)``. ``retrain(model, masks)`` trains the pruned model
    while keeping its masks (for example ``fine_tune`` with fixed arguments).
    ``after_prune(step, sparsity, model)`` and ``after_retrain(step, sparsity, model)`` are
    called after each cut and after each retraining (to measure; ``step`` counts from 1).
    Weights pruned in one round are zero, hence the smallest, so each round's mask contains
    the previous one: once pruned, always pruned. Returns the final masks.
    """
    schedule = [check_fraction(s) for s in schedule]
    if not schedule or any(b < a for a, b in zip(schedule, schedule[1:])):
        raise ValueError(f"schedule must be a non-empty, non-decreasing list of sparsities, not {schedule!r}")
    masks: dict[str, torch.Tensor] = {}
    for step, sparsity in enumerate(schedule, start=1):
        masks = prune_one_shot(model, sparsity, scope)
        if after_prune is not None:
            after_prune(step, sparsity, model)
        if retrain is not None:
            retrain(model, masks)
        if after_retrain is not None:
            after_retrain(step, sparsity, model)
    return masks


def keep_masks_applied(optimizer: torch.optim.Optimizer, model: nn.Module,
                       masks: dict[str, torch.Tensor]):
    """Re-apply ``masks`` after every step of ``optimizer``; returns the hook's handle.

    The gradient of a pruned weight is usually not zero, and momentum or weight decay
    would move it too; zeroing it again after each step keeps it out of the network.
    Call ``handle.remove()`` when done.
    """
    return optimizer.register_step_post_hook(lambda opt, args, kwargs: apply_masks(model, masks))


def fine_tune(model: nn.Module, masks: dict[str, torch.Tensor], train_loader, *, epochs: int,
              device: torch.device | str, lr: float = 3e-4, weight_decay: float = 1e-4,
              loss_fn: Callable | None = None, val_loader=None, channels_last: bool = False,
              progress: bool = False):
    """Retrain a pruned model for ``epochs`` with AdamW, the learning rate annealed along a
    cosine to zero, while ``masks`` keep the pruned weights at zero.

    A thin wrapper around ``course_utils.training.fit``; returns its ``History``. ``masks`` may
    be empty (``{}``) to fine-tune a model without masks, e.g. one pruned by channels.
    """

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * len(train_loader)))
    handle = keep_masks_applied(optimizer, model, masks)
    try:
        return fit(model, train_loader, val_loader, epochs=epochs, optimizer=optimizer, device=device,
                   loss_fn=loss_fn, scheduler=scheduler, scheduler_step="batch",
                   channels_last=channels_last, progress=progress)
    finally:
        handle.remove()


@dataclass
class SparsityReport:
    """How many conv and linear weights are zero, layer by layer and overall."""

    layers: list[tuple[str, tuple[int, ...], int, int]]  # (name, shape, weights, zeros)

    @property
    def weights(self) -> int:
        return sum(row[2] for row in self.layers)

    @property
    def zeros(self) -> int:
        return sum(row[3] for row in self.layers)

    @property
    def sparsity(self) -> float:
        """Share of zeros among all convolution and linear weights."""
        return self.zeros / max(self.weights, 1)

    def layer_sparsity(self) -> dict[str, float]:
        return {name: zeros / total for name, _, total, zeros in self.layers}

    def __str__(self) -> str:
        lines = [f"{'layer':<22} {'shape':<20} {'weights':>9} {'zeros':>9} {'sparsity':>9}"]
        for name, shape, total, zeros in self.layers:
            lines.append(f"{name:<22} {str(shape):<20} {total:>9,d} {zeros:>9,d} {zeros / total:>9.1%}")
        lines.append(f"{'all conv + linear':<22} {'':<20} {self.weights:>9,d} {self.zeros:>9,d} {self.sparsity:>9.1%}")
        return "\n".join(lines)


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Count the zero weights of every convolution and linear layer of ``model``."""
    return SparsityReport([(name, tuple(w.shape), w.numel(), int((w == 0).sum()))
                           for name, w in prunable_weights(model).items()])


# --------------------------------------------------------------------------------------
# Structured (channel) pruning of SmallCNN
# --------------------------------------------------------------------------------------


def _blocks(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The (convolution, batch norm) pair of every block of a ``SmallCNN``."""
    if not isinstance(model, SmallCNN):
        raise TypeError(f"channel pruning is written for SmallCNN, not {type(model).__name__}")
    return [(block[0], block[1]) for block in model.features]


def channel_scores(model: SmallCNN, score: str = "l1") -> list[torch.Tensor]:
    """One importance score per output channel of every block.

    ``"l1"``: the L1 norm of the channel's filter, ``Σ|W[c]|`` (Li et al., 2017).
    ``"bn"``: the absolute batch-norm scale ``|γ_c|`` (Liu et al., 2017, "network
    slimming"). A batch norm right after the convolution undoes any rescaling of a filter,
    so ``γ`` says more directly how loud a channel is.
    """
    if score == "l1":
        return [conv.weight.detach().abs().sum(dim=(1, 2, 3)) for conv, _ in _blocks(model)]
    if score == "bn":
        return [bn.weight.detach().abs() for _, bn in _blocks(model)]
    raise ValueError(f"score must be 'l1' or 'bn', not {score!r}")


def kept_channels(model: SmallCNN, fraction: float, score: str = "l1") -> list[torch.Tensor]:
    """Indices (sorted) of the channels each block keeps when it drops the ``fraction`` of
    its channels with the lowest score; every block keeps at least one."""
    check_fraction(fraction, "fraction")
    keep = []
    for scores in channel_scores(model, score):
        n_keep = max(1, len(scores) - int(round(fraction * len(scores))))
        keep.append(torch.argsort(scores, descending=True, stable=True)[:n_keep].sort().values)
    return keep


def _first_linear(head: nn.Module) -> nn.Linear:
    return next(m for m in head.modules() if isinstance(m, nn.Linear))


@torch.no_grad()
def silence_channels(model: SmallCNN, keep: list[torch.Tensor]) -> SmallCNN:
    """A dense copy of ``model`` in which every channel not in ``keep`` outputs zero.

    Zeroing the filter alone is not enough: the batch norm would still add its shift
    ``β − γ·μ/σ``. With the filter, ``γ`` and ``β`` all zero the channel is exactly 0 after
    the batch norm, ReLU and pooling, so the next layer ignores it: this model computes
    what ``shrink_channels(model, keep)`` computes, with tensors of the original size.
    """
    silent = copy.deepcopy(model)
    for (conv, bn), kept in zip(_blocks(silent), keep):
        dropped = torch.ones(conv.out_channels, dtype=torch.bool)
        dropped[kept] = False
        conv.weight[dropped] = 0.0
        bn.weight[dropped] = 0.0
        bn.bias[dropped] = 0.0
    return silent


@torch.no_grad()
def shrink_channels(model: SmallCNN, keep: list[torch.Tensor]) -> SmallCNN:
    """A new, narrower ``SmallCNN`` holding only the channels in ``keep`` (one index tensor
    per block): each convolution keeps the kept filters (rows) and, of those, the input
    channels the previous block kept (columns); the batch norm keeps the kept channels'
    ``γ, β`` and running statistics; the head's first linear layer keeps the kept columns."""
    blocks = _blocks(model)
    if len(keep) != len(blocks):
        raise ValueError(f"keep has {len(keep)} index tensors, the model has {len(blocks)} blocks")
    config = dict(model.config, widths=tuple(len(k) for k in keep))
    small = SmallCNN(**config)
    inputs = torch.arange(config["in_channels"])
    for (conv, bn), (small_conv, small_bn), kept in zip(blocks, _blocks(small), keep):
        small_conv.weight.copy_(conv.weight[kept][:, inputs])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(small_bn, name).copy_(getattr(bn, name)[kept])
        small_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        inputs = kept
    first, small_first = _first_linear(model.head), _first_linear(small.head)
    small_first.weight.copy_(first.weight[:, inputs])
    small_first.bias.copy_(first.bias)
    for layer, small_layer in zip(model.head, small.head):  # the later layers are unchanged
        if isinstance(layer, nn.Linear) and layer is not first:
            small_layer.load_state_dict(layer.state_dict())
    return small.train(model.training)


def prune_channels(model: SmallCNN, fraction: float, score: str = "l1") -> SmallCNN:
    """Structured pruning: a narrower copy of ``model`` without the ``fraction`` of each
    block's channels that score lowest (see ``channel_scores``)."""
    return shrink_channels(model, kept_channels(model, fraction, score))


# --------------------------------------------------------------------------------------
# Size and speed
# --------------------------------------------------------------------------------------


def csr_bytes(weight: torch.Tensor, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes to store ``weight`` (viewed as a matrix, one row per output unit or filter) in
    compressed sparse row format: every non-zero's value and column index, plus one row
    pointer per row and one at the end."""
    rows = weight.shape[0] if weight.dim() > 0 else 1
    nonzeros = int((weight != 0).sum())
    return nonzeros * (value_bytes + index_bytes) + (rows + 1) * index_bytes


def model_size_bytes(model: nn.Module) -> dict[str, int]:
    """The model's size in bytes, three ways:

    ``"file"``: its ``state_dict`` saved with ``torch.save`` (every zero stored in full);
    ``"zipped"``: that file compressed with zlib (long runs of zeros compress well);
    ``"csr"``: the raw tensors, with convolution and linear weights in CSR format
    (``csr_bytes``: 8 bytes per non-zero, so it only pays below half the weights).
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    file_bytes = buffer.getvalue()
    prunable = set(prunable_weights(model))
    csr = sum(csr_bytes(t) if name in prunable else t.numel() * t.element_size()
              for name, t in model.state_dict().items())
    return {"file": len(file_bytes), "zipped": len(zlib.compress(file_bytes)), "csr": csr}


def median_time_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls.

    The median ignores the occasional slow call (another process, a page fault) that would
    pull a mean up.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats ≥ 1 and warmup ≥ 0, not {repeats!r} and {warmup!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def interleaved_latency(models: dict, x: torch.Tensor, rounds: int = 3, repeats: int = 10, warmup: int = 2,
                        threads: int | None = None) -> dict:
    """Milliseconds of one forward pass on ``x`` for each of ``models`` (name → model), timed fairly.

    Timing one model after another lets a burst of other work on the computer land on a single
    model and make it look slow. Here every round times every model (``measure_latency``, the
    median of ``repeats`` passes), the rounds one after another, so a burst spreads over
    several models and rounds; each model keeps its fastest round, because other work can only
    add time, never remove it.
    """
    if rounds < 1:
        raise ValueError(f"need rounds ≥ 1, not {rounds!r}")
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            ms = measure_latency(model, x, repeats=repeats, warmup=warmup, threads=threads)
            best[name] = min(best[name], ms)
    return best


def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3,
                    threads: int | None = None) -> float:
    """Median milliseconds of one forward pass of ``model`` on the batch ``x``.

    Runs in evaluation mode under ``torch.inference_mode`` (no autograd bookkeeping), with
    ``threads`` CPU threads (default: the current setting), after ``warmup`` untimed passes
    that let PyTorch pick its kernels and allocate its buffers. The model's mode and the
    thread count are restored afterwards.
    """
    previous_threads, was_training = torch.get_num_threads(), model.training
    if threads is not None:
        torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            return median_time_ms(lambda: model(x), repeats=repeats, warmup=warmup)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
