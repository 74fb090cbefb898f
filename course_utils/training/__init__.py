"""Training and evaluating PyTorch models, and keeping what they learned.

* ``loop``: ``train_step``, ``train_one_epoch``, ``evaluate``, ``predict``, ``fit``;
* ``course_utils.history`` (one level up): the ``History`` of a run and the ``Evaluation``
  of a model, shared with the NumPy loop;
* ``checkpoints``: the checkpoint folder, saving and loading, the ``ModelCard`` saved with
  every model, the registry of the lessons' models, ``rebuild`` and ``load_model``;
* ``inference``: ``TrainedModel`` and ``load_lesson_model``, the one inference path;
* ``metrics``, ``calibration``: scoring a classifier; ``scoring``: test scores with n and a
  95 % interval, and paired comparisons of two models; ``features``: cached backbone
  features; ``baselines``: a logistic regression or small MLP on fixed features, trained in
  seconds; ``pruning``: sparsity; ``distributed``: several processes.

The most used names are importable from ``course_utils.training`` itself.
"""

from ..history import MONITORS, Evaluation, History
from .checkpoints import (LESSON_CHECKPOINTS, ArchitectureMismatchError, CheckpointMissingError, ModelCard,
                          architecture_of, checkpoint_dir, checkpoint_path, last_state_path, load_checkpoint,
                          load_model, load_weights, read_checkpoint, rebuild, save_checkpoint, save_model)
from .inference import TrainedModel, load_lesson_model
from .loop import CountingLoader, evaluate, fit, predict, train_one_epoch, train_step
from .scoring import PairedComparison, TestScore, compare_paired, mcnemar_exact, score_test, seed_summary

__all__ = ["MONITORS", "Evaluation", "History", "LESSON_CHECKPOINTS", "ArchitectureMismatchError",
           "CheckpointMissingError", "ModelCard", "architecture_of", "checkpoint_dir", "checkpoint_path",
           "last_state_path", "load_checkpoint", "load_model", "load_weights", "read_checkpoint", "rebuild",
           "save_checkpoint", "save_model", "TrainedModel", "load_lesson_model", "CountingLoader", "evaluate",
           "fit", "predict", "train_one_epoch", "train_step", "PairedComparison", "TestScore", "compare_paired",
           "mcnemar_exact", "score_test", "seed_summary"]
