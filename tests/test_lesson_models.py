"""Loading lesson models back (course_utils.lesson_models): clear errors, faithful rebuilds."""

from __future__ import annotations

import pytest
import torch

from course_utils import lesson_models
from course_utils.data import ImageSet
from course_utils.models import SmallCNN
from course_utils.train import save_checkpoint


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


def test_missing_checkpoint_names_the_lesson(checkpoints):
    with pytest.raises(lesson_models.CheckpointMissingError) as error:
        lesson_models.load_lesson_model("08", profile="smoke")
    message = str(error.value)
    assert "lesson 08" in message and "notebooks/08_" in message and "COURSE_PROFILE=smoke" in message
    with pytest.raises(ValueError, match="no checkpoint is known"):
        lesson_models.load_lesson_model("99")


def test_small_cnn_round_trip_and_inputs(checkpoints):
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    meta = {"config": model.config, "size": 32, "mean": 0.2, "std": 0.5, "lesson": "08"}
    path = lesson_models.checkpoint_path("08", "smoke")
    save_checkpoint(path, model, metric="val_loss", value=1.0, meta=meta)
    trained = lesson_models.load_lesson_model("08", profile="smoke")
    images = ImageSet(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2]), ["a", "b", "c"])
    x = trained.inputs(images)
    expected = (images.images.float()[:, None] / 255 - 0.2) / 0.5
    assert x.shape == (3, 1, 32, 32) and torch.allclose(x, expected)
    with torch.no_grad():
        assert torch.allclose(trained.model(x), model(x))
    probs, labels = trained.predict(images)
    assert probs.shape == (3, 4) and labels.tolist() == [0, 1, 2]
    small = ImageSet(images.images[:, :16, :16], images.labels, images.files)
    with pytest.raises(ValueError, match="expects 32 px"):
        trained.inputs(small)


def test_pretrained_backbone_is_rebuilt_from_its_name(checkpoints):
    from course_utils.pretrained import build_backbone

    model = build_backbone("efficientnet_lite0", 4).eval()
    meta = {"name": "efficientnet_lite0", "n_classes": 4, "size": 64, "mean": 0.5, "std": 0.5, "channels": 3,
            "flip_average": True}
    save_checkpoint(lesson_models.checkpoint_path("11", "smoke"), model, metric="val_loss", value=1.0, meta=meta)
    trained = lesson_models.load_lesson_model("11", profile="smoke")
    assert trained.channels == 3 and trained.flip_average
    images = ImageSet(torch.zeros(2, 64, 64, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
    assert trained.inputs(images).shape == (2, 3, 64, 64)
    assert torch.allclose(trained.inputs(images), torch.full((2, 3, 64, 64), -1.0))
