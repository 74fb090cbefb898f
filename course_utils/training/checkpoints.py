"""Checkpoints: the one place that saves and loads trained models, with their model card.

It owns the checkpoint folder (``checkpoints/<profile>/``), writes atomically
(``course_utils.files``), and stores with every model a ``ModelCard``: its architecture and
config, input size, channels, normalisation, classes, test-time flips and the split it was
trained on. ``rebuild`` makes the network from the card alone; loading weights saved by
another architecture raises ``ArchitectureMismatchError`` naming both.

The lessons' models are registered in ``LESSON_CHECKPOINTS``; ``load_lesson_model("08")``
gives the model ready for inference (``TrainedModel``). A missing checkpoint raises
``CheckpointMissingError`` naming the lesson that makes it and the command that runs it; a
damaged one raises ``course_utils.files.UnreadableFileError`` naming the lesson to re-run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.source import CLASSES
from ..files import (CourseFileError, UnreadableFileError, atomic_torch_save, dict_with, move_aside, project_root,
                     read_or_explain, shown_path, torch_load)
from ..history import MONITORS, History, _is_better
from ..models.cnn import SmallCNN
from ..models.inspection import unwrap
from ..models.pretrained import BACKBONES, build_backbone
from ..models.resnet import PlainNet, SmallResNet
from ..profiles import DEFAULT_SEED, active_seed, current_profile, current_split


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_dir(profile: str | None = None, create: bool = True) -> Path:
    """``checkpoints/<profile>/`` in the project (created if needed, unless ``create=False``).

    Each profile has its own folder, so a one-epoch smoke run never replaces the model a
    full run trained. A run with another seed than the default (``COURSE_SEED``) writes to
    ``checkpoints/<profile>/seed<N>/``: measuring the spread never touches the models that
    later lessons load. A run on the official split (``COURSE_SPLIT=official``) writes to
    ``checkpoints/<profile>/official/``, so its models never mix with the grouped split's.
    ``COURSE_CHECKPOINT_DIR`` moves the whole tree elsewhere.
    """
    root = Path(os.environ.get("COURSE_CHECKPOINT_DIR", project_root() / "checkpoints"))
    folder = root / (profile or current_profile())
    if current_split() != "grouped":
        folder = folder / current_split()
    if active_seed() != DEFAULT_SEED:
        folder = folder / f"seed{active_seed()}"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def last_state_path(path: Path) -> Path:
    """Where ``fit`` keeps the latest training state of checkpoint ``path`` (for resuming)."""
    path = Path(path)
    return path.with_name(path.stem + ".last" + path.suffix)


class ArchitectureMismatchError(CourseFileError):
    """A checkpoint holds the weights of another network than the model it is loaded into."""


def checkpoint_origin(path: Path) -> tuple[str, str]:
    """``(what made it, how to fix it)`` for a checkpoint file, for error messages.

    A lesson's checkpoint (or its last state) names the lesson to re-run; any other file
    names the training code that saved it.
    """

    path = Path(path)
    origin = lesson_origin(path)
    if origin is not None:
        return origin
    return ("the training run that saved it (course_utils.training.fit or save_checkpoint)",
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
                    meta: dict | None = None, card: ModelCard | None = None, force: bool = False) -> bool:
    """Save ``model`` (and optionally its training state) unless a better one is stored.

    The file remembers its validation ``metric`` and ``value``. If ``path`` already holds a
    checkpoint whose value for the same metric is as good or better, nothing is written and
    ``False`` is returned; a file saved under a different metric is not comparable and is
    kept too (pass ``force=True`` to overwrite either way). An unreadable old file counts as
    absent: it is moved aside to ``<name>.damaged-<time>`` and the new model saved.
    Writing is atomic (``course_utils.files.atomic_write``).
    ``card`` (a ``ModelCard``) says what the model is and how to feed it: ``load_model`` and
    ``load_lesson_model`` rebuild the network from it alone. ``meta`` is free-form.
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
        "card": card.as_dict() if card is not None else None,
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


def save_last_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, history: History, *,
                    epoch: int, best_value: float, wait: int, best_state: dict | None = None, scheduler=None,
                    plateau=None, meta: dict | None = None, card: ModelCard | None = None,
                    loader_rng: list[torch.Tensor] | None = None) -> None:
    """Write the latest training state of a run (``fit`` calls this after every epoch), from
    which an interrupted run resumes exactly: weights, optimizer, schedulers, history, the
    early-stopping counters and every random state (torch's and the loader's)."""
    atomic_torch_save({
        "model": unwrap(model).state_dict(), "architecture": architecture_of(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "plateau": plateau.state_dict() if plateau is not None else None,
        "history": history.as_dict(), "epoch": epoch, "best_value": best_value, "wait": wait,
        "best_state": best_state, "rng": torch.get_rng_state(), "meta": meta or {},
        "card": card.as_dict() if card is not None else None,
        "loader_rng": loader_rng or [],
    }, path)


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


#: The registry of the lessons' models: the key a lesson saves under, and its file in
#: ``checkpoint_dir()``. "11-long" is lesson 11's optional long run (kept apart, so it never
#: replaces the model later lessons load).
LESSON_CHECKPOINTS: dict[str, str] = {
    "08": "lesson08_cnn.pt",
    "09": "lesson09_resnet.pt",
    "10": "lesson10_transfer.pt",
    "11": "lesson11_efficientnet.pt",
    "11-long": "lesson11_efficientnet_long.pt",
}


class CheckpointMissingError(FileNotFoundError):
    """A lesson's trained model is not on disk yet: run that lesson first."""


def checkpoint_path(lesson: str, profile: str | None = None) -> Path:
    """Where lesson ``lesson`` saves its model in ``profile`` (default: the active one)."""
    if lesson not in LESSON_CHECKPOINTS:
        raise ValueError(f"no checkpoint is known for lesson {lesson!r}; known: {sorted(LESSON_CHECKPOINTS)}")
    return checkpoint_dir(profile) / LESSON_CHECKPOINTS[lesson]


def _lesson_file(lesson: str) -> str:
    number = lesson.split("-")[0]
    found = sorted((project_root() / "notebooks").glob(f"{number}_*.md"))
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
    return f"COURSE_PROFILE={profile} jupytext --to ipynb --execute {notebook} -o /tmp/{lesson.split('-')[0]}.ipynb"


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


# --------------------------------------------------------------------------------------
# The model card: what a saved model is and how to feed it
# --------------------------------------------------------------------------------------

#: The course's own networks, by class name; a pretrained backbone is named as in
#: ``course_utils.models.pretrained.BACKBONES`` and rebuilt by ``build_backbone``.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"SmallCNN": SmallCNN, "SmallResNet": SmallResNet,
                                                      "PlainNet": PlainNet}


#: Checkpoints saved before model cards: the network each lesson saved, for those that do not
#: name it (lesson 08's meta and lesson 09's both held a bare ``config``).
PRE_CARD_ARCHITECTURES = {"08": "SmallCNN", "09": "SmallResNet"}


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild a saved model and to feed it, saved with its weights.

    ``architecture`` is a key of ``ARCHITECTURES`` (built as ``cls(**config)``) or a
    pretrained backbone's name (built by ``build_backbone(name, **config)``). Inputs are
    ``size`` × ``size`` px images with ``channels`` channels, normalised as
    ``(x - mean) / std``; ``flips`` says whether the lesson scored with test-time flip
    averaging (chosen on validation data); ``split`` names the data it was trained on.
    ``extra`` keeps anything else a lesson records (its test accuracy, a choice it made).
    """

    architecture: str
    config: dict
    size: int
    channels: int = 1
    mean: float = 0.0
    std: float = 1.0
    classes: tuple[str, ...] = CLASSES
    flips: bool = False
    split: str = field(default_factory=current_split)
    lesson: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: nn.Module, **fields) -> "ModelCard":
        """The card of one of the course's own networks: its class name and ``model.config``."""
        model = unwrap(model)
        return cls(architecture=type(model).__name__, config=dict(model.config), **fields)

    def build(self) -> nn.Module:
        """A fresh, untrained network of this architecture (weights come from the checkpoint)."""
        if self.architecture in ARCHITECTURES:
            try:
                return ARCHITECTURES[self.architecture](**self.config)
            except TypeError as error:
                raise ValueError(f"a {self.architecture} cannot be built from the config {self.config} ({error}); "
                                 f"the model card does not match the network that saved it") from error
        if self.architecture in BACKBONES:
            return build_backbone(self.architecture, **self.config)
        known = sorted(ARCHITECTURES) + list(BACKBONES)
        raise ValueError(f"no architecture called {self.architecture!r} (known: {', '.join(known)})")

    def replace(self, **changes) -> "ModelCard":
        """A copy with some fields changed (e.g. ``flips=True`` once validation chose them)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        card = dataclasses.asdict(self)
        card["classes"] = list(self.classes)
        return card

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: Path | str = "the checkpoint") -> "ModelCard":
        """The card saved in a checkpoint; checkpoints saved before cards existed are read
        from their ``meta`` (``config``: the course's network its stored architecture names,
        ``SmallCNN`` if none; ``name``: a pretrained backbone)."""
        if checkpoint.get("card"):
            card = dict(checkpoint["card"])
            card["classes"] = tuple(card.get("classes") or CLASSES)
            return cls(**card)
        meta = dict(checkpoint.get("meta") or {})
        if "name" in meta:
            architecture, config = meta["name"], {"n_classes": meta.get("n_classes", len(CLASSES))}
        elif "config" in meta:  # the class name starts the stored description, e.g. "SmallResNet(...) with ..."
            named = str(checkpoint.get("architecture") or "").split("(")[0]
            if named not in ARCHITECTURES:
                named = PRE_CARD_ARCHITECTURES.get(str(meta.get("lesson")), "SmallCNN")
            architecture, config = named, meta["config"]
        else:
            raise ValueError(f"{path} has no model card and its meta does not say how to rebuild the model "
                             f"(keys {sorted(meta)}); re-run the lesson that saved it")
        known = {"name", "n_classes", "config", "size", "channels", "mean", "std", "classes", "flip_average", "lesson"}
        return cls(architecture=architecture, config=config, size=int(meta.get("size", 0)),
                   channels=int(meta.get("channels", 1)), mean=_scalar(meta.get("mean", 0.0)),
                   std=_scalar(meta.get("std", 1.0)), classes=tuple(meta.get("classes") or CLASSES),
                   flips=bool(meta.get("flip_average", False)), split="stratified (saved before model cards)",
                   lesson=meta.get("lesson"), extra={k: v for k, v in meta.items() if k not in known})


def _scalar(value) -> float:
    """Normalisation constants: one number (all channels equal for gray slices)."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if not np.allclose(values, values[0]):
        raise ValueError(f"per-channel normalisation {values.tolist()} is not supported for gray slices")
    return float(values[0])


def rebuild(card: ModelCard, state: dict, path: Path | str = "the checkpoint",
            architecture: str | None = None) -> nn.Module:
    """The network ``card`` describes, with the weights ``state``, in evaluation mode.

    Weights of another architecture raise ``ArchitectureMismatchError`` naming both.
    """
    try:
        model = card.build()
    except ValueError as error:
        raise ValueError(f"{path}: {error}. Re-run the lesson or code that saved it.") from error
    load_weights(model, {"model": state, "architecture": architecture}, Path(path),
                 model_is=f"the {card.architecture} its model card describes")
    return model.eval()


def load_model(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """``(model in evaluation mode, its ModelCard)`` from a checkpoint file, rebuilt from the
    card alone (no need to know which network saved it)."""
    checkpoint = read_checkpoint(Path(path))
    card = ModelCard.from_checkpoint(checkpoint, path)
    return rebuild(card, checkpoint["model"], path, checkpoint.get("architecture")), card


def save_model(lesson: str, model: nn.Module, card: ModelCard, *, metric: str, value: float,
               history: History | None = None, force: bool = False) -> bool:
    """Save a lesson's model with its card, under the lesson's name in the registry.

    One call, no file name: ``save_model("09", model, card, metric="val_loss", value=...)``.
    Like ``save_checkpoint`` it never replaces a better stored model; returns whether it saved.
    """
    return save_checkpoint(checkpoint_path(lesson), model, metric=metric, value=value, history=history,
                           card=card.replace(lesson=lesson), force=force)
