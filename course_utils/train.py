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
  loader trains the same way on several processes (``course_utils.distributed``).

With the same seed and data order (``course_utils.data.make_loader``) a run on the CPU
gives the same numbers every time, and a resumed run the same numbers as one that was
never interrupted (the random states of torch and of the loader's shuffling are saved).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import project_root, shown_path
from .files import (CourseFileError, UnreadableFileError, atomic_torch_save, dict_with, move_aside,
                    read_or_explain, torch_load)
from .profiles import DEFAULT_SEED, active_seed, current_profile
from .speed import SpeedWatch, record_speed, recorded_speed, speed_file_disabled

MONITORS = {"val_loss": "min", "val_acc": "max"}


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


@dataclass
class History:
    """What happened in each epoch; index ``i`` of every list is epoch ``i + 1``.

    ``images_per_second`` is the training speed of each epoch (training batches only,
    without the validation pass).

    ``best_epoch`` is the (1-based) epoch with the best monitored validation metric;
    ``stopped_early`` says whether early stopping ended the run; ``diverged`` whether the
    training loss became infinite or NaN (the run stops then: nothing good follows).
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_second: list[float] = field(default_factory=list)
    monitor: str = "val_loss"
    best_epoch: int | None = None
    stopped_early: bool = False
    diverged: bool = False

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers 1, 2, ..., for the x axis of a plot."""
        return list(range(1, len(self) + 1))

    def best(self, metric: str | None = None) -> float:
        """The value of ``metric`` (default: the monitored one) at the best epoch."""
        if self.best_epoch is None:
            return math.nan
        return getattr(self, metric or self.monitor)[self.best_epoch - 1]

    def append(self, **row: float) -> None:
        for key, value in row.items():
            getattr(self, key).append(float(value))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls(**data)

    def __repr__(self) -> str:
        if not len(self):
            return "History(empty)"
        best = f"best epoch {self.best_epoch}: {self.monitor}={self.best():.4f}" if self.best_epoch else "no best epoch"
        flags = (", stopped early" if self.stopped_early else "") + (", diverged" if self.diverged else "")
        return (f"History({len(self)} epochs, {best}, last val_acc={self.val_acc[-1]:.4f}, "
                f"{sum(self.seconds):.0f} s{flags})")


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_dir(profile: str | None = None, create: bool = True) -> Path:
    """``checkpoints/<profile>/`` in the project (created if needed, unless ``create=False``).

    Each profile has its own folder, so a one-epoch smoke run never replaces the model a
    full run trained. A run with another seed than the default (``COURSE_SEED``) writes to
    ``checkpoints/<profile>/seed<N>/``: measuring the spread never touches the models that
    later lessons load. ``COURSE_CHECKPOINT_DIR`` moves the whole tree elsewhere.
    """
    root = Path(os.environ.get("COURSE_CHECKPOINT_DIR", project_root() / "checkpoints"))
    folder = root / (profile or current_profile())
    if active_seed() != DEFAULT_SEED:
        folder = folder / f"seed{active_seed()}"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def last_state_path(path: Path) -> Path:
    """Where ``fit`` keeps the latest training state of checkpoint ``path`` (for resuming)."""
    path = Path(path)
    return path.with_name(path.stem + ".last" + path.suffix)


def _is_better(value: float, reference: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(reference):
        return True
    return value < reference if mode == "min" else value > reference


class ArchitectureMismatchError(CourseFileError):
    """A checkpoint holds the weights of another network than the model it is loaded into."""


def checkpoint_origin(path: Path) -> tuple[str, str]:
    """``(what made it, how to fix it)`` for a checkpoint file, for error messages.

    A lesson's checkpoint (or its last state) names the lesson to re-run; any other file
    names the training code that saved it.
    """
    from .lesson_models import lesson_origin

    path = Path(path)
    origin = lesson_origin(path)
    if origin is not None:
        return origin
    return ("the training run that saved it (course_utils.train.fit or save_checkpoint)",
            f"run that training again: when it saves, the damaged file is moved aside to "
            f"{path.name}.damaged-<time> automatically (or delete {path} yourself).")


def read_checkpoint(path: Path) -> dict:
    """The raw content of a checkpoint file (tensors on the CPU).

    A file that cannot be read (cut short, empty, not a checkpoint) raises
    ``UnreadableFileError`` naming the file, the lesson or code that made it, and the fix.
    """
    made_by, fix = checkpoint_origin(path)
    return read_or_explain(path, partial(torch_load, weights_only=False), made_by=made_by, fix=fix,
                           check=dict_with("model"))


def architecture_of(model: nn.Module) -> str:
    """A short description of a network, e.g. ``"SmallCNN(widths=(8, 16), ...) with 5,012 parameters"``."""
    model = unwrap(model)
    config = getattr(model, "config", None)
    settings = "(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")" if isinstance(config, dict) else ""
    n = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__}{settings} with {n:,} parameters"


def stored_architecture(checkpoint: dict) -> str:
    """What network a checkpoint's weights belong to, from what it stored about itself."""
    if checkpoint.get("architecture"):
        return str(checkpoint["architecture"])
    meta = checkpoint.get("meta") or {}
    if "config" in meta:
        return "SmallCNN(" + ", ".join(f"{k}={v}" for k, v in meta["config"].items()) + ")"
    if "name" in meta:
        return str(meta["name"])
    state = checkpoint.get("model") or {}
    return f"a network with {sum(v.numel() for v in state.values() if torch.is_tensor(v)):,} stored numbers"


def _first_difference(model: nn.Module, state: dict) -> str:
    expected = unwrap(model).state_dict()
    for key, tensor in expected.items():
        if key not in state:
            return f"the checkpoint has no {key}"
        if torch.is_tensor(state[key]) and state[key].shape != tensor.shape:
            return f"{key} is {tuple(state[key].shape)} in the checkpoint, {tuple(tensor.shape)} in the model"
    extra = [k for k in state if k not in expected]
    return f"the model has no {extra[0]}" if extra else "their tensors differ"


def load_weights(model: nn.Module, checkpoint: dict, path: Path, model_is: str = "the model given") -> None:
    """``model.load_state_dict(checkpoint["model"])``, or an ``ArchitectureMismatchError``
    naming both networks when the weights belong to another architecture."""
    try:
        unwrap(model).load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ArchitectureMismatchError(
            f"{path} holds the weights of {stored_architecture(checkpoint)}, but {model_is} is "
            f"{architecture_of(model)} ({_first_difference(model, checkpoint['model'])}).\n"
            f"Load it into the network it was saved from, or train the new network under another "
            f"checkpoint name (or with resume=False)."
        ) from error


def _stored_metric(path: Path) -> dict | None:
    """The ``metric`` entry of the checkpoint at ``path``; ``None`` if there is no file, or if
    it is unreadable, in which case it is moved aside (kept, never deleted) and that is said."""
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path).get("metric") or {}
    except UnreadableFileError as error:
        aside = move_aside(path)
        print(f"{path.name} could not be read ({error.reason}); treating it as absent. "
              f"The damaged file is kept as {aside.name}; saving the new model in its place.")
        return None


def save_checkpoint(path: Path, model: nn.Module, *, metric: str, value: float, mode: str | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                    history: History | None = None, epoch: int | None = None,
                    meta: dict | None = None, force: bool = False) -> bool:
    """Save ``model`` (and optionally its training state) unless a better one is stored.

    The file remembers its validation ``metric`` and ``value``. If ``path`` already holds a
    checkpoint whose value for the same metric is as good or better, nothing is written and
    ``False`` is returned; a file saved under a different metric is not comparable and is
    kept too (pass ``force=True`` to overwrite either way). An unreadable old file counts as
    absent: it is moved aside to ``<name>.damaged-<time>`` and the new model saved.
    Writing is atomic (``course_utils.files.atomic_write``).
    ``meta`` is free-form: how to rebuild the model, the input size, normalisation, ...
    """
    path = Path(path)
    mode = mode or MONITORS.get(metric, "min")
    stored = _stored_metric(path)
    if stored is not None and not force:
        if stored.get("name") != metric:
            print(f"Kept {shown_path(path)}: it was saved under metric {stored.get('name')!r}, not {metric!r} "
                  "(delete it or pass force=True).")
            return False
        if not _is_better(value, stored["value"], mode):
            return False
    payload = {
        "model": unwrap(model).state_dict(),
        "architecture": architecture_of(model),
        "metric": {"name": metric, "value": float(value), "mode": mode},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history.as_dict() if history is not None else None,
        "epoch": epoch,
        "meta": meta or {},
        "torch": torch.__version__,
    }
    atomic_torch_save(payload, path)
    return True


def load_checkpoint(path: Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler`` if given).

    Returns the whole checkpoint dict (``metric``, ``epoch``, ``meta``, ``history``, ...)
    so the caller can see what it loaded. An unreadable file raises ``UnreadableFileError``,
    weights of another network ``ArchitectureMismatchError``; both say what to do.
    """
    ckpt = read_checkpoint(path)
    if model is not None:
        load_weights(model, ckpt, Path(path))
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


# --------------------------------------------------------------------------------------
# One epoch, evaluation, prediction
# --------------------------------------------------------------------------------------


def _autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when asked; a no-op elsewhere (keeps the CPU path exact)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               device: torch.device, loss_fn: Callable, batch_scheduler=None, *,
               channels_last: bool = False, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step on one batch: forward, loss, backward, optimizer step.

    ``batch_scheduler`` (e.g. ``OneCycleLR``) is stepped after the optimizer. Returns the
    loss and the logits (still on the device). Every training run from lesson 08 on uses
    this function, and so does the course's speed measurement.
    """
    x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
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

    Returns ``{"loss": ..., "acc": ...}``.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        total_loss += loss_fn(logits.float(), y).item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1)}


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, *, channels_last: bool = False,
            amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, C)`` (softmax of the logits) and the true labels ``(N,)``."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        x = _to_device(x, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
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


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (or the model itself),
    so that a checkpoint loads without the wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _set_epoch(loader, epoch: int) -> None:
    """Tell a ``DistributedSampler`` (behind the loader's batch sampler) which epoch starts:
    it reshuffles every process's shard with the same permutation."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


LAST_STATE_KEYS = ("model", "optimizer", "history", "epoch", "best_value", "wait", "rng")


def _read_last_state(path: Path) -> dict | None:
    """The training state to resume from, or ``None`` if there is none.

    An unreadable state file (a crash while the disk filled up, a copy cut short) must not
    block training: it is moved aside to ``<name>.damaged-<time>``, that is said, and the
    run starts from the first epoch.
    """
    if not path.is_file():
        return None
    made_by, _ = checkpoint_origin(path)
    try:
        return read_or_explain(path, partial(torch_load, weights_only=False), made_by=made_by, fix="",
                               check=dict_with(*LAST_STATE_KEYS))
    except UnreadableFileError as error:
        aside = move_aside(path)
        print(f"Cannot resume from {path.name}: {error.reason}. The damaged file is kept as {aside.name}; "
              f"training starts from the first epoch.")
        return None


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
        channels_last: bool = False, amp: bool | None = None, meta: dict | None = None) -> History:
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
    meta: stored in the checkpoint (e.g. how to rebuild the model, input size, normalisation).
    """
    from tqdm.auto import tqdm

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

    bar = tqdm(range(start, epochs), desc="epochs", unit="epoch", disable=not progress,
               initial=start, total=epochs)
    for epoch in bar:
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
            val = {"loss": math.nan, "acc": math.nan}
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
                                epoch=epoch + 1, meta=meta)
        else:
            wait += 1
            if early_stopping is not None and wait >= early_stopping:
                history.stopped_early = True
        if checkpoint is not None:
            atomic_torch_save({
                "model": unwrap(model).state_dict(), "architecture": architecture_of(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "plateau": plateau.state_dict() if plateau is not None else None,
                "history": history.as_dict(), "epoch": epoch + 1, "best_value": best_value, "wait": wait,
                "best_state": best_state, "rng": torch.get_rng_state(), "meta": meta or {},
                "loader_rng": [g.get_state() for g in _loader_generators(train_loader)],
            }, last_path)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", val_loss=f"{val['loss']:.3f}",
                        val_acc=f"{val['acc']:.3f}", lr=f"{lr:.2g}")
        if history.stopped_early or history.diverged:
            break
    bar.close()

    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
    if progress and len(history):
        print(_summary(history, early_stopping is not None and best_state is not None))
    if watch is not None and history.images_per_second and not speed_file_disabled():
        record_speed(watch.key, float(np.median(history.images_per_second)), "course_utils.train.fit")
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

