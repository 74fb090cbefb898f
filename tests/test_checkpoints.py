"""Saving and loading the lessons' models (course_utils.training.checkpoints and .inference): model
cards, the registry, clear errors, faithful rebuilds, one way to prepare and score an image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import training
from course_utils.data import ImageSet, square_resize
from course_utils.models import SmallCNN
from course_utils.models.pretrained import build_backbone
from course_utils.models.resnet import SmallResNet
from course_utils.training import ArchitectureMismatchError, ModelCard, load_model, save_checkpoint, save_model


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


def test_missing_checkpoint_names_the_lesson(checkpoints):
    with pytest.raises(training.CheckpointMissingError) as error:
        training.load_lesson_model("08", profile="smoke")
    message = str(error.value)
    assert "lesson 08" in message and "notebooks/08_" in message and "COURSE_PROFILE=smoke" in message
    with pytest.raises(ValueError, match="no checkpoint is known"):
        training.load_lesson_model("99")


def test_small_cnn_round_trip_and_inputs(checkpoints):
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    meta = {"config": model.config, "size": 32, "mean": 0.2, "std": 0.5, "lesson": "08"}
    path = training.checkpoint_path("08", "smoke")
    save_checkpoint(path, model, metric="val_loss", value=1.0, meta=meta)
    trained = training.load_lesson_model("08", profile="smoke")
    images = ImageSet(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2]), ["a", "b", "c"])
    x = trained.preprocess(images)
    expected = (images.images.float()[:, None] / 255 - 0.2) / 0.5
    assert x.shape == (3, 1, 32, 32) and torch.allclose(x, expected)
    with torch.no_grad():
        assert torch.allclose(trained.model(x), model(x))
    probs, labels = trained.predict(images)
    assert probs.shape == (3, 4) and labels.tolist() == [0, 1, 2]
    small = ImageSet(images.images[:, :16, :16], images.labels, images.files)
    with pytest.raises(ValueError, match="expects 32 px"):
        trained.preprocess(small)


def test_pretrained_backbone_is_rebuilt_from_its_name(checkpoints):
    model = build_backbone("efficientnet_lite0", 4).eval()
    meta = {"name": "efficientnet_lite0", "n_classes": 4, "size": 64, "mean": 0.5, "std": 0.5, "channels": 3,
            "flip_average": True}
    save_checkpoint(training.checkpoint_path("11", "smoke"), model, metric="val_loss", value=1.0, meta=meta)
    trained = training.load_lesson_model("11", profile="smoke")
    assert trained.channels == 3 and trained.card.flips
    images = ImageSet(torch.zeros(2, 64, 64, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
    assert trained.preprocess(images).shape == (2, 3, 64, 64)
    assert torch.allclose(trained.preprocess(images), torch.full((2, 3, 64, 64), -1.0))


def test_a_lesson_saves_with_one_call_and_its_card_rebuilds_the_right_network(checkpoints, monkeypatch):
    # A SmallResNet's config used to be read back as a SmallCNN's: the card names the class.
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    torch.manual_seed(0)
    model = SmallResNet(widths=(8, 16), blocks=(1, 1)).eval()
    card = ModelCard.for_model(model, size=32, mean=0.2, std=0.5)
    assert save_model("09", model, card, metric="val_loss", value=1.0)
    assert training.checkpoint_path("09").is_file() and training.checkpoint_path("09").parent.name == "smoke"
    loaded, loaded_card = load_model(training.checkpoint_path("09"))
    assert type(loaded) is SmallResNet and loaded_card == card.replace(lesson="09")
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # a worse model never replaces the stored one
    assert not save_model("09", model, card, metric="val_loss", value=2.0)


def test_weights_of_another_architecture_fail_naming_both(checkpoints):
    model = SmallResNet(widths=(8, 16), blocks=(1, 1))
    wrong = ModelCard(architecture="SmallCNN", config={"widths": (8, 16), "hidden": 0}, size=32)
    path = checkpoints / "wrong.pt"
    save_checkpoint(path, model, metric="val_loss", value=1.0, card=wrong)
    with pytest.raises(ArchitectureMismatchError) as error:
        load_model(path)
    message = str(error.value)
    assert "SmallResNet" in message and "SmallCNN" in message and str(path) in message


def test_an_unknown_architecture_is_named(checkpoints):
    with pytest.raises(ValueError, match="no architecture called 'VGG'"):
        ModelCard(architecture="VGG", config={}, size=32).build()


def test_one_image_is_prepared_once_like_the_training_cache(checkpoints):
    torch.manual_seed(0)
    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    card = ModelCard.for_model(model, size=32, mean=0.2, std=0.5, flips=True)
    save_checkpoint(training.checkpoint_path("08", "smoke"), model, metric="val_loss", value=1.0, card=card)
    trained = training.load_lesson_model("08", profile="smoke")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8))
    x = trained.preprocess(image)
    pixels = torch.from_numpy(np.array(square_resize(image.convert("L"), 32)))
    assert x.shape == (1, 1, 32, 32) and torch.allclose(x[0, 0], (pixels.float() / 255 - 0.2) / 0.5)
    probs, labels = trained.predict(x)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2  # the card says: flips
    assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-6) and labels.tolist() == [-1]
    plain, _ = trained.predict(x, flips=False)
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(plain), model(x).softmax(1), atol=1e-6)


def test_a_lesson_09_checkpoint_saved_before_model_cards_is_read_as_a_small_resnet(checkpoints):
    # Lesson 09 stored a SmallResNet's config under meta["config"], where lesson 08 stored a SmallCNN's.
    model = SmallResNet(widths=(8, 16), blocks=(1, 1)).eval()
    path = checkpoints / "lesson09_resnet.pt"
    save_checkpoint(path, model, metric="val_loss", value=1.0, meta={"config": model.config, "size": 32})
    loaded, card = load_model(path)
    assert type(loaded) is SmallResNet and card.architecture == "SmallResNet" and card.size == 32
    with pytest.raises(ValueError, match="a SmallCNN cannot be built from the config"):
        card.replace(architecture="SmallCNN").build()


def test_an_old_checkpoint_without_a_stored_architecture_is_read_through_its_lesson(checkpoints):
    model = SmallResNet(widths=(8, 16), blocks=(1, 1)).eval()
    path = checkpoints / "old.pt"
    save_checkpoint(path, model, metric="val_loss", value=1.0, meta={"config": model.config, "size": 32, "lesson": "09"})
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["architecture"] = None  # as the first lesson-09 checkpoints were saved
    torch.save(checkpoint, path)
    assert type(load_model(path)[0]) is SmallResNet
    checkpoint["meta"]["lesson"] = "08"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=f"{path}: a SmallCNN cannot be built .* Re-run"):
        load_model(path)
