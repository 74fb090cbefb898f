"""The course's training loop: one epoch, a full fit, evaluation and prediction.

``fit`` is a small, readable version of what Keras' ``model.fit`` or PyTorch Lightning do:

* a progress bar over epochs (``tqdm.auto``: a widget in notebooks, text elsewhere);
* a ``History`` of loss, accuracy, learning rate and seconds per epoch;
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
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .profiles import DEFAULT_SEED, active_seed, current_profile

MONITORS = {"val_loss": "min", "val_acc": "max"}


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


@dataclass
class History:
    """What happened in each epoch; index ``i`` of every list is epoch ``i + 1``.

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


def checkpoint_dir(profile: str | None = None) -> Path:
    """``checkpoints/<profile>/`` in the project (created if needed).

    Each profile has its own folder, so a one-epoch smoke run never replaces the model a
    full run trained. A run with another seed than the default (``COURSE_SEED``) writes to
    ``checkpoints/<profile>/seed<N>/``: measuring the spread never touches the models that
    later lessons load. ``COURSE_CHECKPOINT_DIR`` moves the whole tree elsewhere.
    """
    from .data import project_root

    root = Path(os.environ.get("COURSE_CHECKPOINT_DIR", project_root() / "checkpoints"))
    folder = root / (profile or current_profile())
    if active_seed() != DEFAULT_SEED:
        folder = folder / f"seed{active_seed()}"
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


def _atomic_save(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as tmp:
        try:
            torch.save(payload, tmp)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def read_checkpoint(path: Path) -> dict:
    """The raw content of a checkpoint file (tensors on the CPU)."""
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def save_checkpoint(path: Path, model: nn.Module, *, metric: str, value: float, mode: str | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                    history: History | None = None, epoch: int | None = None,
                    meta: dict | None = None, force: bool = False) -> bool:
    """Save ``model`` (and optionally its training state) unless a better one is stored.

    The file remembers its validation ``metric`` and ``value``. If ``path`` already holds a
    checkpoint whose value for the same metric is as good or better, nothing is written and
    ``False`` is returned; a file saved under a different metric is not comparable and is
    kept too (pass ``force=True`` to overwrite either way). Writing is atomic.
    ``meta`` is free-form: how to rebuild the model, the input size, normalisation, ...
    """
    path = Path(path)
    mode = mode or MONITORS.get(metric, "min")
    if path.is_file() and not force:
        stored = read_checkpoint(path).get("metric", {})
        if stored.get("name") != metric:
            print(f"Kept {path}: it was saved under metric {stored.get('name')!r}, not {metric!r} "
                  "(delete it or pass force=True).")
            return False
        if not _is_better(value, stored["value"], mode):
            return False
    payload = {
        "model": unwrap(model).state_dict(),
        "metric": {"name": metric, "value": float(value), "mode": mode},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history.as_dict() if history is not None else None,
        "epoch": epoch,
        "meta": meta or {},
        "torch": torch.__version__,
    }
    _atomic_save(payload, path)
    return True


def load_checkpoint(path: Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler`` if given).

    Returns the whole checkpoint dict (``metric``, ``epoch``, ``meta``, ``history``, ...)
    so the caller can see what it loaded.
    """
    ckpt = read_checkpoint(path)
    if model is not None:
        model.load_state_dict(ckpt["model"])
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


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device,
                    loss_fn: Callable | None = None, batch_scheduler=None, *,
                    channels_last: bool = False, amp: bool = False) -> tuple[float, float]:
    """One pass over ``loader``: forward, loss, backward, optimizer step, for every batch.

    ``batch_scheduler`` (e.g. ``OneCycleLR``) is stepped after every optimizer step.
    Returns the mean training loss and accuracy of the epoch (measured on the augmented
    batches, in training mode, while the weights change: a running estimate).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
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

    if resume and last_path is not None and last_path.is_file():
        state = read_checkpoint(last_path)
        model.load_state_dict(state["model"])
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
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, device, loss_fn, batch_scheduler,
                                                channels_last=channels_last, amp=amp)
        if val_loader is not None and math.isfinite(train_loss):
            val = evaluate(model, val_loader, device, loss_fn, channels_last=channels_last, amp=amp)
        else:
            val = {"loss": math.nan, "acc": math.nan}
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        history.append(train_loss=train_loss, train_acc=train_acc, val_loss=val["loss"], val_acc=val["acc"],
                       lr=lr, seconds=time.perf_counter() - began)
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
            _atomic_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
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
    return history


def _summary(history: History, restored: bool) -> str:
    parts = [f"{len(history)} epochs in {sum(history.seconds) / 60:.1f} min"]
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

