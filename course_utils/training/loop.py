"""The course's training loop: one epoch, a full fit, evaluation and prediction.

``fit`` is a small, readable version of what Keras' ``model.fit`` or PyTorch Lightning do:

* a progress bar over epochs (``tqdm.auto``: a widget in notebooks, text elsewhere);
* a ``History`` of loss, accuracy, learning rate, seconds and training images/s per epoch;
* in the full profile, a note (once) when training runs far below its recorded speed on
  this machine: another program is probably using the CPU (``course_utils.speed``);
* early stopping on a validation metric, restoring the best weights at the end;
* learning-rate schedules, stepped per epoch or per batch (``OneCycleLR``), and
  ``ReduceLROnPlateau`` driven by the validation metric;
* checkpoints under ``checkpoints/<profile>/`` that never replace a better model, and a
  "last state" file from which an interrupted run resumes (model, optimizer, scheduler,
  history, epoch);
* optional channels-last memory format and, on CUDA, mixed precision (``torch.autocast``);
* a model wrapped in ``DistributedDataParallel`` with a ``DistributedSampler`` behind its
  loader trains the same way on several processes (``course_utils.training.distributed``).

With the same seed and data order (``course_utils.data.make_loader``) a run on the CPU
gives the same numbers every time, and a resumed run the same numbers as one that was
never interrupted (the random states of torch and of the loader's shuffling are saved).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..history import MONITORS, Evaluation, History, _is_better
from ..models.inspection import to_device
from ..profiles import current_profile
from ..progress import finish
from ..speed import SpeedWatch, record_speed, recorded_speed, speed_file_disabled
from .checkpoints import (ModelCard, _read_last_state, checkpoint_dir, last_state_path, load_weights, save_checkpoint,
                          save_last_state)


# --------------------------------------------------------------------------------------
# One epoch, evaluation, prediction
# --------------------------------------------------------------------------------------


def _autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when asked; a no-op elsewhere (keeps the CPU path exact)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               device: torch.device, loss_fn: Callable, batch_scheduler=None, *,
               channels_last: bool = False, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step on one batch: forward, loss, backward, optimizer step.

    ``batch_scheduler`` (e.g. ``OneCycleLR``) is stepped after the optimizer. Returns the
    loss and the logits (still on the device). Every training run from lesson 08 on uses
    this function, and so does the course's speed measurement.
    """
    x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
    with _autocast(device, amp):
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if batch_scheduler is not None:
        batch_scheduler.step()
    return loss, logits


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device,
                    loss_fn: Callable | None = None, batch_scheduler=None, *,
                    channels_last: bool = False, amp: bool = False) -> tuple[float, float]:
    """One pass over ``loader``: a ``train_step`` for every batch.

    ``batch_scheduler`` (e.g. ``OneCycleLR``) is stepped after every optimizer step.
    Returns the mean training loss and accuracy of the epoch (measured on the augmented
    batches, in training mode, while the weights change: a running estimate).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        loss, logits = train_step(model, x, y, optimizer, device, loss_fn, batch_scheduler,
                                  channels_last=channels_last, amp=amp)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y.to(logits.device)).sum().item()
        seen += len(y)
        if not math.isfinite(total_loss):
            break  # diverged: stop wasting time, the caller records it
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, loss_fn: Callable | None = None, *,
             channels_last: bool = False, amp: bool = False) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``loader``, in evaluation mode.

    Returns an ``Evaluation``: ``loss, acc = evaluate(...)``, or ``evaluate(...)["acc"]``.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        total_loss += loss_fn(logits.float(), y).item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return Evaluation(total_loss / max(seen, 1), correct / max(seen, 1))


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, *, flips: bool = False, channels_last: bool = False,
            amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, C)`` (softmax of the logits) and the true labels ``(N,)``.

    ``flips=True`` is test-time augmentation: the softmax of each image and of its mirror
    image are averaged. Left-right mirroring is a symmetry of the task (the training data
    were flipped too), so the two predictions should agree; averaging them cancels part of
    the model's noise.
    """
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        x = to_device(x, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
            mirrored = model(x.flip(-1)) if flips else None
        p = torch.softmax(logits.float(), dim=1)
        if flips:
            p = (p + torch.softmax(mirrored.float(), dim=1)) / 2
        probs.append(p.cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


# --------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _loader_generators(loader) -> list[torch.Generator]:
    """The private random generators behind a loader: its shuffling (on the loader or its
    sampler, possibly wrapped in a batch sampler) and its dataset's augmentation."""
    candidates = [loader, getattr(loader, "sampler", None), getattr(getattr(loader, "sampler", None), "sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None),
                  getattr(getattr(loader, "dataset", None), "transform", None)]
    found: list[torch.Generator] = []
    for obj in candidates:
        generator = getattr(obj, "generator", None)
        if isinstance(generator, torch.Generator) and not any(generator is g for g in found):
            found.append(generator)
    return found


def _set_epoch(loader, epoch: int) -> None:
    """Tell a ``DistributedSampler`` (behind the loader's batch sampler) which epoch starts:
    it reshuffles every process's shard with the same permutation."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


class CountingLoader:
    """Iterates a loader (or any iterable of ``(x, y)`` batches) and counts the images served."""

    def __init__(self, loader):
        self.loader, self.images = loader, 0

    def __iter__(self):
        for x, y in self.loader:
            self.images += len(y)
            yield x, y


def _speed_watch(checkpoint: Path | None, progress: bool) -> SpeedWatch | None:
    """A ``SpeedWatch`` for a lesson's full-profile run: one that saves its model into
    ``checkpoint_dir()`` (the checkpoint's name is the run's key in ``results/speed.json``).

    Smoke runs are too short to time (a few batches, mostly warm-up), and runs saving
    elsewhere (tests, experiments) would fill the record with speeds of other things.
    """
    if checkpoint is None or not progress or current_profile() != "full":
        return None
    if checkpoint.resolve().parent != checkpoint_dir(create=False).resolve():
        return None
    return SpeedWatch(checkpoint.stem, recorded_speed(checkpoint.stem))


def _clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(model: nn.Module, train_loader, val_loader, *, epochs: int, optimizer: torch.optim.Optimizer,
        device: torch.device, loss_fn: Callable | None = None, scheduler=None,
        scheduler_step: str = "epoch", early_stopping: int | None = None,
        reduce_lr_on_plateau: int | None = None, monitor: str = "val_loss",
        checkpoint: Path | None = None, resume: bool = False, progress: bool = True,
        channels_last: bool = False, amp: bool | None = None, meta: dict | None = None,
        card: ModelCard | None = None) -> History:
    """Train ``model`` for up to ``epochs`` epochs and return its ``History``.

    Parameters
    ----------
    val_loader: evaluated after every epoch; ``None`` trains without validation (the
        validation columns of the history are NaN, and no best checkpoint is written).
    scheduler: a ``torch.optim.lr_scheduler`` object, stepped once per epoch or, with
        ``scheduler_step="batch"``, after every batch (``OneCycleLR``). A
        ``ReduceLROnPlateau`` passed here is stepped with the monitored metric.
    early_stopping: patience in epochs. Stop once ``monitor`` has gone that many epochs
        without improving (as in Keras), then restore the weights of the best epoch.
    reduce_lr_on_plateau: patience in epochs; halve the learning rate when ``monitor`` has
        gone more than that many epochs without improving (torch's ``ReduceLROnPlateau``).
    monitor: ``"val_loss"`` (lower is better) or ``"val_acc"`` (higher is better).
    checkpoint: a file path, usually ``checkpoint_dir() / "name.pt"``. The best model is
        saved there (never replacing a better stored one), and the latest training state
        beside it (``last_state_path``) after every epoch.
    resume: continue from the latest state of ``checkpoint`` if it exists; ``epochs`` is
        the total number of epochs, counting those already done.
    channels_last: use the channels-last memory format (faster convolutions on many CPUs).
    amp: mixed precision (bfloat16 autocast); default on for CUDA, never on the CPU.
    card: the ``ModelCard`` saved with the model (how to rebuild it and feed it); ``meta``:
        anything else to store in the checkpoint.
    """
    from tqdm.auto import tqdm  # here: only when a bar is shown

    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {list(MONITORS)}, not {monitor!r}")
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(f"scheduler_step must be 'epoch' or 'batch', not {scheduler_step!r}")
    if (early_stopping is not None or reduce_lr_on_plateau is not None) and val_loader is None:
        raise ValueError("early stopping and reduce_lr_on_plateau need a val_loader")
    device = torch.device(device)
    mode = MONITORS[monitor]
    amp = device.type == "cuda" if amp is None else amp
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    plateau = None
    if reduce_lr_on_plateau is not None:
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5,
                                                             patience=reduce_lr_on_plateau)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        plateau, scheduler = scheduler, None

    history = History(monitor=monitor)
    best_value = math.inf if mode == "min" else -math.inf
    best_state, wait, start = None, 0, 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    last_path = last_state_path(checkpoint) if checkpoint is not None else None
    watch = _speed_watch(checkpoint, progress)

    state = _read_last_state(last_path) if resume and last_path is not None else None
    if state is not None:
        load_weights(model, state, last_path)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if plateau is not None and state.get("plateau") is not None:
            plateau.load_state_dict(state["plateau"])
        history = History.from_dict(state["history"])
        start, best_value, wait = state["epoch"], state["best_value"], state["wait"]
        best_state = state.get("best_state")
        torch.set_rng_state(state["rng"])
        generators = _loader_generators(train_loader)
        if len(state.get("loader_rng") or []) == len(generators):
            for generator, rng_state in zip(generators, state["loader_rng"]):
                generator.set_state(rng_state)
        if progress:
            print(f"Resuming from {last_path.name} after epoch {start}.")

    bar = tqdm(desc="epochs", unit="epoch", disable=not progress, initial=start, total=epochs)
    for epoch in range(start, epochs):
        if history.stopped_early or history.diverged:  # a resumed run that had already ended
            break
        began = time.perf_counter()
        lr = _current_lr(optimizer)
        batch_scheduler = scheduler if scheduler_step == "batch" else None
        _set_epoch(train_loader, epoch)
        counted = CountingLoader(train_loader)
        train_loss, train_acc = train_one_epoch(model, counted, optimizer, device, loss_fn, batch_scheduler,
                                                channels_last=channels_last, amp=amp)
        speed = counted.images / max(time.perf_counter() - began, 1e-9)
        if val_loader is not None and math.isfinite(train_loss):
            val = evaluate(model, val_loader, device, loss_fn, channels_last=channels_last, amp=amp)
        else:
            val = Evaluation(math.nan, math.nan)
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        history.append(train_loss=train_loss, train_acc=train_acc, val_loss=val["loss"], val_acc=val["acc"],
                       lr=lr, seconds=time.perf_counter() - began, images_per_second=speed)
        slow = watch.check(speed) if watch is not None else None
        if slow:
            print(f"Note: {slow}")
        if not math.isfinite(train_loss):
            history.diverged = True
        value = history.val_loss[-1] if monitor == "val_loss" else history.val_acc[-1]
        if plateau is not None and math.isfinite(value):
            plateau.step(value)
        if _is_better(value, best_value, mode):
            best_value, wait = value, 0
            history.best_epoch = epoch + 1
            if early_stopping is not None:
                best_state = _clone_state(model)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, metric=monitor, value=value, mode=mode, history=history,
                                epoch=epoch + 1, meta=meta, card=card)
        else:
            wait += 1
            if early_stopping is not None and wait >= early_stopping:
                history.stopped_early = True
        if checkpoint is not None:
            save_last_state(last_path, model, optimizer, history, epoch=epoch + 1, best_value=best_value, wait=wait,
                            best_state=best_state, scheduler=scheduler, plateau=plateau, meta=meta, card=card,
                            loader_rng=[g.get_state() for g in _loader_generators(train_loader)])
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val['acc']:.3f}", refresh=False)  # short: fits a phone
        bar.update()
        if history.stopped_early or history.diverged:
            break
    finish(bar, "epochs", stopped_early=history.stopped_early)

    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
    if progress and len(history):
        print(_summary(history, early_stopping is not None and best_state is not None))
    if watch is not None and history.images_per_second and not speed_file_disabled():
        record_speed(watch.key, float(np.median(history.images_per_second)), "course_utils.training.fit")
    return history


def _summary(history: History, restored: bool) -> str:
    parts = [f"{len(history)} epochs in {sum(history.seconds) / 60:.1f} min"]
    if history.images_per_second:
        parts.append(f"training {np.median(history.images_per_second):.0f} images/s")
    if history.diverged:
        parts.append("training diverged (loss not finite)")
    if history.stopped_early:
        parts.append("stopped early")
    if history.best_epoch:
        parts.append(f"best epoch {history.best_epoch}: val_loss={history.best('val_loss'):.4f}, "
                     f"val_acc={history.best('val_acc'):.4f}")
    if restored:
        parts.append("best weights restored")
    return "; ".join(parts)
