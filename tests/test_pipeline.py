"""The lesson pipeline (course_utils.data.pipeline): the steps the lessons used to write out
by hand, done once, with the same numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from course_utils import data
from course_utils.data import (ImageSet, LessonData, MRIDataset, load_data, load_splits, make_loader, pixel_stats,
                               serve, subset, train_augmentation)

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Training").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)


def _images(n: int = 40, size: int = 12, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=g),
                    torch.arange(n) % 4, [f"img{i}.jpg" for i in range(n)])


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_subset_and_pixel_stats():
    images = _images()
    assert subset(images, None) is images
    sample = subset(images, 3)
    assert sample.class_counts() == {c: 3 for c in images.classes}
    assert sample.files == images.sample_per_class(3, seed=0).files
    mean, std = pixel_stats(images)
    pixels = images.images.float() / 255
    assert mean == pytest.approx(pixels.mean().item()) and std == pytest.approx(pixels.std().item())


def test_serve_is_the_loader_a_lesson_wrote_by_hand():
    images = _images()
    by_hand = make_loader(MRIDataset(images, transform=train_augmentation(seed=3), channels=3, mean=0.4, std=0.2),
                          batch_size=8, shuffle=True, seed=3)
    served = serve(images, train=True, batch_size=8, channels=3, mean=0.4, std=0.2, seed=3)
    for (x, y), (x2, y2) in zip(_batches(by_hand), _batches(served), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    evaluation = _batches(serve(images, batch_size=8, eval_batch_size=16, mean=0.4, std=0.2))
    assert [len(y) for _, y in evaluation] == [16, 16, 8]
    assert torch.equal(torch.cat([y for _, y in evaluation]), images.labels)  # in order, not augmented
    assert torch.allclose(evaluation[0][0], (images.float_images()[:16] - 0.4) / 0.2)


def test_lesson_data_makes_each_loader_once_and_draws_no_global_randomness():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    images = _images()
    pipeline = LessonData(images, images, images, mean=0.5, std=0.25, batch_size=8)
    loaders = pipeline.train_loader, pipeline.val_loader, pipeline.test_loader
    assert torch.equal(torch.rand(1), expected)  # building it drew nothing from torch's global generator
    assert pipeline.train_loader is loaders[0]  # one loader: its generators carry on from epoch to epoch
    first = _batches(pipeline.train_loader)
    fresh = _batches(LessonData(images, images, images, mean=0.5, std=0.25, batch_size=8).train_loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, fresh))  # same seed, same batches


@real_data
def test_load_data_equals_the_steps_it_replaces():
    mri = load_data(32, 64, per_class=(20, 10, None), seed=1)
    train, val, test = load_splits(32)
    official = load_data(32, 64, per_class=(None, None, 5), split="official")
    assert official.test.files == load_splits(32, "official")[2].sample_per_class(5, seed=0).files
    assert set(test.files).isdisjoint(train.files) and len(test) > 1000  # the grouped split's
    train, val = train.sample_per_class(20, seed=0), val.sample_per_class(10, seed=0)
    assert mri.train.files == train.files and mri.val.files == val.files and mri.test.files == test.files
    pixels = train.float_images()
    assert (mri.mean, mri.std) == (pixels.mean().item(), pixels.std().item())
    by_hand = make_loader(MRIDataset(train, transform=train_augmentation(seed=1), mean=mri.mean, std=mri.std),
                          batch_size=64, shuffle=True, seed=1)
    for (x, y), (x2, y2) in zip(_batches(by_hand), _batches(mri.train_loader), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
