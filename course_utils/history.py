"""What happened in a training run, and what an evaluation measures: one ``History`` and one
``Evaluation`` shared by both halves of the course (the NumPy loop of lessons 03 to 05 and
``fit`` from lesson 08 on). Plain Python: no NumPy or PyTorch needed here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

MONITORS = {"val_loss": "min", "val_acc": "max"}


class Evaluation(NamedTuple):
    """Mean loss and accuracy on a data set.

    It unpacks as ``loss, acc = evaluate(...)`` (the NumPy half) and reads by name as
    ``evaluate(...)["acc"]`` or ``.acc`` (the PyTorch half): one shape for both.
    """

    loss: float
    acc: float

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


@dataclass
class History:
    """What happened in each epoch; index ``i`` of every list is epoch ``i + 1``.

    ``train_loss``/``train_acc``: in the NumPy loop, measured after each epoch on the whole
    training set in evaluation mode (comparable with the validation numbers), with
    ``batch_loss`` the mean mini-batch loss during the epoch (dropout on); in ``fit``, the
    running mean over the epoch's augmented batches. ``lr`` and ``images_per_second`` (the
    training speed, without the validation pass) are recorded by ``fit``.

    ``best_epoch`` is the (1-based) epoch with the best monitored validation metric (the
    weights the model holds at the end when early stopping was used); ``stopped_epoch`` the
    last epoch the NumPy loop ran; ``stopped_early`` whether early stopping ended a ``fit``;
    ``diverged`` whether the training loss became infinite or NaN (the run stops then).
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_second: list[float] = field(default_factory=list)
    monitor: str = "val_loss"
    best_epoch: int | None = None
    stopped_epoch: int = 0
    stopped_early: bool = False
    diverged: bool = False

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers 1, 2, ..., for the x axis of a plot."""
        return list(range(1, len(self) + 1))

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

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


def _is_better(value: float, reference: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(reference):
        return True
    return value < reference if mode == "min" else value > reference
