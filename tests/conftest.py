"""Fixtures shared by the app's tests (tests/test_app.py, tests/test_app_guard.py)."""

from __future__ import annotations

import pytest
import torch

from course_utils import training
from course_utils.models import SmallCNN
from course_utils.training import ModelCard, save_checkpoint

#: The tiny lesson-08 model's input size (pixels).
TINY_SIZE = 32


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """Only lesson 08's model exists (a tiny untrained SmallCNN at 32 px, in a temporary folder);
    10 and 11 are missing."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    card = ModelCard.for_model(model, size=TINY_SIZE, mean=0.2, std=0.3, lesson="08")
    save_checkpoint(training.checkpoint_path("08", "smoke"), model, metric="val_loss", value=1.0, card=card)
    return tmp_path


@pytest.fixture
def trained(checkpoints):
    """That model, loaded through the course's inference path."""
    return training.load_lesson_model("08", profile="smoke")
