"""Models trained by earlier lessons, loaded back from their checkpoints with their inputs.

Lessons 08, 10 and 11 save their trained models under ``checkpoints/<profile>/`` with a
``meta`` dictionary that says how to rebuild the network and how to prepare its inputs
(image size, channels, normalisation). Later lessons (Grad-CAM, honest evaluation) use
``load_lesson_model("08")`` and get the model, ready in evaluation mode, together with
functions that turn an ``ImageSet`` into exactly the inputs the model was trained on.

A missing checkpoint raises ``CheckpointMissingError`` naming the lesson that makes it and
the command that runs it; a damaged one raises ``course_utils.files.UnreadableFileError``
naming the lesson to re-run (which moves the damaged file aside when it saves again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import ImageSet, MRIDataset, make_loader, project_root
from .profiles import current_profile
from .train import checkpoint_dir, load_weights, read_checkpoint

LESSON_CHECKPOINTS: dict[str, str] = {
    "08": "lesson08_cnn.pt",
    "10": "lesson10_transfer.pt",
    "11": "lesson11_efficientnet.pt",
}


class CheckpointMissingError(FileNotFoundError):
    """A lesson's trained model is not on disk yet: run that lesson first."""


def checkpoint_path(lesson: str, profile: str | None = None) -> Path:
    """Where lesson ``lesson`` saves its model in ``profile`` (default: the active one)."""
    if lesson not in LESSON_CHECKPOINTS:
        raise ValueError(f"no checkpoint is known for lesson {lesson!r}; known: {sorted(LESSON_CHECKPOINTS)}")
    return checkpoint_dir(profile) / LESSON_CHECKPOINTS[lesson]


def _lesson_file(lesson: str) -> str:
    found = sorted((project_root() / "notebooks").glob(f"{lesson}_*.md"))
    return f"notebooks/{found[0].name}" if found else f"notebooks/{lesson}_*.md"


def missing_message(lesson: str, path: Path, profile: str) -> str:
    notebook = _lesson_file(lesson)
    return (f"No trained model from lesson {lesson} for the '{profile}' profile: {path} does not exist.\n"
            f"It is made by lesson {lesson} ({notebook}). Run that lesson first, in the same profile:\n"
            f"  open it in JupyterLab and run all cells, or\n"
            f"  {run_command(lesson, profile)}")


def run_command(lesson: str, profile: str) -> str:
    """The command line that runs lesson ``lesson`` in ``profile`` without JupyterLab."""
    notebook = _lesson_file(lesson)
    return f"COURSE_PROFILE={profile} jupytext --to ipynb --execute {notebook} -o /tmp/{lesson}.ipynb"


def lesson_origin(path: Path) -> tuple[str, str] | None:
    """``(what made it, how to fix it)`` if ``path`` is a lesson's checkpoint or its last
    state (``lesson08_cnn.pt``, ``lesson08_cnn.last.pt``), else ``None``."""
    path = Path(path)
    for lesson, name in LESSON_CHECKPOINTS.items():
        stem, suffix = name.rsplit(".", 1)
        if path.name in (name, f"{stem}.last.{suffix}"):
            profile = path.parent.name
            return (f"lesson {lesson} ({_lesson_file(lesson)}) in the '{profile}' profile",
                    f"run lesson {lesson} again in the same profile (in JupyterLab, or: "
                    f"{run_command(lesson, profile)}). When it saves its model, the damaged file is "
                    f"moved aside to {path.name}.damaged-<time> automatically; nothing needs deleting.")
    return None


def _scalar(value) -> float:
    """Normalisation constants: one number (all channels equal for gray slices)."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if not np.allclose(values, values[0]):
        raise ValueError(f"per-channel normalisation {values.tolist()} is not supported for gray slices")
    return float(values[0])


def rebuild(meta: dict, state: dict, path: Path | str = "the checkpoint", architecture: str | None = None) -> nn.Module:
    """The network a checkpoint describes, with its weights, in evaluation mode.

    ``meta["config"]``: the course's ``SmallCNN`` (lesson 08); ``meta["name"]``: a pretrained
    backbone with a new head (lessons 10 and 11, see ``course_utils.pretrained``).
    """
    if "config" in meta:
        from .models import SmallCNN

        model = SmallCNN(**meta["config"])
    elif "name" in meta:
        from .pretrained import build_backbone

        model = build_backbone(meta["name"], meta.get("n_classes", 4))
    else:
        raise ValueError(f"{path}: its meta does not say how to rebuild the model (keys {sorted(meta)}); "
                         f"re-run the lesson that saved it")
    load_weights(model, {"model": state, "architecture": architecture}, Path(path),
                 model_is="the network its meta describes")
    return model.eval()


@dataclass
class TrainedModel:
    """A trained model and how to feed it: ``size`` px, ``channels``, ``(x - mean) / std``."""

    lesson: str
    model: nn.Module
    meta: dict
    path: Path

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def channels(self) -> int:
        return int(self.meta.get("channels", 1))

    @property
    def flip_average(self) -> bool:
        """Whether the lesson scored with test-time flip averaging (chosen on validation data)."""
        return bool(self.meta.get("flip_average", False))

    def dataset(self, images: ImageSet) -> MRIDataset:
        """``images`` (at ``self.size`` px) served as this model's inputs, without augmentation."""
        if images.images.shape[-1] != self.size:
            raise ValueError(f"lesson {self.lesson}'s model expects {self.size} px images, "
                             f"not {images.images.shape[-1]} px; load them with size={self.size}")
        return MRIDataset(images, channels=self.channels, mean=_scalar(self.meta.get("mean", 0.0)),
                          std=_scalar(self.meta.get("std", 1.0)))

    def inputs(self, images: ImageSet) -> torch.Tensor:
        """All of ``images`` as one input batch ``(N, channels, size, size)``."""
        return self.dataset(images)[list(range(len(images)))][0]

    def predict(self, images: ImageSet, device: torch.device | str = "cpu", batch_size: int = 64,
                flips: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, C), labels (N,))``, as the lesson that trained it scored
        (``flips=None``: flip averaging if that lesson chose it)."""
        from .pretrained import predict_with_flips
        from .train import predict

        loader = make_loader(self.dataset(images), batch_size=batch_size, shuffle=False)
        self.model.to(device)
        use_flips = self.flip_average if flips is None else flips
        if use_flips:
            return predict_with_flips(self.model, loader, device)
        return predict(self.model, loader, device)

    def __repr__(self) -> str:
        return (f"TrainedModel(lesson {self.lesson}: {type(self.model).__name__}, {self.size} px, "
                f"{self.channels} channel(s), from {self.path.name})")


def load_lesson_model(lesson: str, profile: str | None = None) -> TrainedModel:
    """Load the model lesson ``lesson`` ("08", "10" or "11") trained in ``profile``.

    Raises ``CheckpointMissingError`` (naming the lesson to run) if it is not there yet,
    ``UnreadableFileError`` (naming the lesson to re-run) if it is damaged.
    """
    profile = profile or current_profile()
    path = checkpoint_path(lesson, profile)
    if not path.is_file():
        raise CheckpointMissingError(missing_message(lesson, path, profile))
    checkpoint = read_checkpoint(path)
    meta = dict(checkpoint.get("meta") or {})
    return TrainedModel(lesson=lesson, model=rebuild(meta, checkpoint["model"], path, checkpoint.get("architecture")), meta=meta, path=path)
