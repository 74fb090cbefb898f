"""The duplicate audit (course_utils.data.audit) finds planted copies — re-encoded, resized, blurred,
mirrored — and pairs no distinct slices, even neighbouring slices of one scan."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps

from course_utils import data
from course_utils.data import audit

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Training").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)


# ------------------------------------------------------------------------------------------
# Planting copies
# ------------------------------------------------------------------------------------------


def reencode(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


COPIES = {
    "exact copy": lambda img: img,
    "JPEG quality 25": lambda img: reencode(img, 25),
    "resized to 45 %": lambda img: img.resize((int(img.width * 0.45), int(img.height * 0.45)), Image.Resampling.BICUBIC),
    "Gaussian blur": lambda img: img.filter(ImageFilter.GaussianBlur(1.5)),
    "mirrored, JPEG 70": lambda img: reencode(ImageOps.mirror(img), 70),
    "brighter, more contrast": lambda img: img.point(lambda p: min(255, int(p * 1.25 + 8))),
}


def thumbnails(images: list[Image.Image], size: int) -> torch.Tensor:
    """What the course caches: padded to a square, resized, uint8."""
    return torch.from_numpy(np.stack([np.asarray(data.square_resize(im, size)) for im in images]))


def audit_with_copies(originals: list[Image.Image], names: list[str], labels: list[int]):
    """Audit ``originals`` plus one planted copy of each of the first len(COPIES) of them.

    Originals go to Training, copies to Testing. Returns the audit and the expected pairs.
    """
    images, files, checksums, expected = list(originals), [f"Training/x/{n}" for n in names], list(names), set()
    all_labels = list(labels)
    for k, (kind, make) in enumerate(COPIES.items()):
        images.append(make(originals[k]))
        files.append(f"Testing/x/copy-{k}")
        checksums.append(names[k] if kind == "exact copy" else f"copy-{k}")
        all_labels.append(labels[k])
        expected.add((k, len(images) - 1))
    result = audit.audit_images(thumbnails(images, 64), all_labels, files, checksums, coarse=thumbnails(images, 32))
    return result, expected


def found_pairs(pairs: dict) -> set[tuple[int, int]]:
    return set(zip(pairs["i"].tolist(), pairs["j"].tolist()))


# ------------------------------------------------------------------------------------------
# Synthetic slices: a skull ring, a brain with ventricles and random lesions and texture
# ------------------------------------------------------------------------------------------


def phantom(seed: int, size: int = 160) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    a, b = 0.36 + 0.04 * rng.random(), 0.42 + 0.04 * rng.random()
    r = (xx / a) ** 2 + (yy / b) ** 2
    img = np.where(r < 1, 90.0, 0.0) + np.where((r > 0.85) & (r < 1), 120, 0)
    for _ in range(5):  # lesions and ventricles at random places
        cx, cy, s = rng.uniform(-0.2, 0.2), rng.uniform(-0.25, 0.25), rng.uniform(0.03, 0.09)
        img += rng.choice([-60, 80]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) * (r < 0.85)
    texture = np.asarray(Image.fromarray(rng.integers(0, 255, (size // 8, size // 8)).astype(np.uint8))
                         .resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    img += 0.15 * (texture - 128) * (r < 0.85)
    # A scanner's finite resolution: no perfectly sharp edges.
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(1))


def test_finds_planted_copies_of_synthetic_slices_and_nothing_else():
    originals = [phantom(seed) for seed in range(12)]
    result, expected = audit_with_copies(originals, [f"p{i}" for i in range(12)], [i % 4 for i in range(12)])
    assert found_pairs(result.near) == expected
    assert found_pairs(result.exact) == {(0, 12)}
    assert len(result.groups) == len(COPIES) and all(len(g) == 2 for g in result.groups)
    # Every copy sits in Testing with its original in Training: none of them is clean.
    assert result.clean_test_indices().size == 0
    counts = result.counts()
    assert counts["total"]["near: Testing with a copy in Training"] == len(COPIES)
    assert counts["total"]["exact: Testing with a copy in Training"] == 1


def test_distinct_slices_in_testing_stay_clean():
    images = [phantom(seed) for seed in range(8)]
    files = [f"Training/x/{i}" for i in range(4)] + [f"Testing/x/{i}" for i in range(4, 8)]
    result = audit.audit_images(thumbnails(images, 64), [0] * 8, files, [str(i) for i in range(8)],
                                coarse=thumbnails(images, 32))
    assert found_pairs(result.near) == set()
    assert result.clean_test_indices().tolist() == [4, 5, 6, 7]
    assert (result.test_neighbour["similarity"] < audit.NEAR_DUPLICATE_THRESHOLD).all()


def test_orientations_are_matched():
    img = phantom(3)
    flipped = [img, ImageOps.flip(img), img.rotate(180)]
    sim, _, orientation = audit.nearest_neighbours(thumbnails(flipped[1:], 64), thumbnails(flipped[:1], 64))
    assert (sim > 0.999).all() and orientation.tolist() == [2, 3]


def test_descriptor_ignores_brightness_and_contrast():
    x = torch.randint(0, 120, (1, 16, 16), generator=torch.Generator().manual_seed(0))
    d1, d2 = audit.descriptors(x), audit.descriptors(x * 2 + 10)
    assert torch.allclose(d1 @ d2.T, torch.ones(1, 1), atol=1e-6)
    assert torch.equal(audit.descriptors(torch.full((1, 4, 4), 7)), torch.zeros(1, 16))  # blank matches nothing


def test_connected_groups_are_transitive():
    groups = audit.connected_groups(7, np.array([0, 1, 5]), np.array([1, 2, 6]))
    assert groups == [[0, 1, 2], [5, 6]]


def test_clean_manifest_round_trip(tmp_path):
    images = [phantom(seed) for seed in range(4)]
    files = ["Training/glioma/a.jpg", "Training/glioma/b.jpg", "Testing/glioma/c.jpg", "Testing/notumor/d.jpg"]
    images[2] = images[0].filter(ImageFilter.GaussianBlur(1))  # c is a copy of a
    result = audit.audit_images(thumbnails(images, 64), [0, 0, 0, 2], files, ["a", "b", "c", "d"])
    path = tmp_path / "clean.csv"
    assert audit.write_clean_test_manifest(result, path) == 1
    rows = audit.read_clean_test_manifest(path)
    assert [r["file"] for r in rows] == ["Testing/notumor/d.jpg"] and rows[0]["label"] == "notumor"
    assert float(rows[0]["similarity"]) < audit.NEAR_DUPLICATE_THRESHOLD
    with pytest.raises(FileNotFoundError, match="write-clean-test"):
        audit.read_clean_test_manifest(tmp_path / "missing.csv")


def test_shortcut_features_and_ct_score():
    info = data.FileInfo("Training/notumor/x.jpg", "Training", "notumor", "PNG", "RGB", 300, 200, 60_000)
    images = torch.zeros(1, 10, 10, dtype=torch.uint8)
    images[0, :5] = 200
    features = audit.shortcut_features([info], images)
    assert features.shape == (1, len(audit.SHORTCUT_FEATURES))
    assert features[0, :5].tolist() == [300, 200, 1.5, 0.5, 1.0]
    skull = torch.zeros(1, 20, 20, dtype=torch.uint8)
    skull[0, 2:18, 2:18] = 255          # saturated ring...
    skull[0, 4:16, 4:16] = 100          # ...around gray brain
    mri = skull.clone()
    mri[0][mri[0] == 255] = 150
    assert audit.ct_score(skull)[0] > 0.4 and audit.ct_score(mri)[0] == 0


# ------------------------------------------------------------------------------------------
# Real slices, including the hardest distinct pairs: neighbouring slices of one scan
# ------------------------------------------------------------------------------------------

# Consecutive figshare slices of one patient: distinct images, yet the most similar pairs of
# distinct slices in the dataset. They must not be called duplicates.
NEIGHBOURS = ["Tr-gl_0124.jpg", "Tr-gl_0125.jpg", "Tr-gl_0126.jpg", "Tr-gl_0159.jpg", "Tr-gl_0160.jpg",
              "Tr-gl_1288.jpg", "Tr-gl_1289.jpg"]
OTHERS = ["meningioma/Tr-me_0010.jpg", "pituitary/Tr-pi_0010.jpg", "notumor/Tr-no_0010.jpg"]


@real_data
def test_finds_planted_copies_of_real_slices_and_keeps_neighbouring_slices_apart():
    root = data.locate_dataset()
    relpaths = [f"Training/glioma/{n}" for n in NEIGHBOURS] + [f"Training/{p}" for p in OTHERS]
    relpaths = relpaths[::2] + relpaths[1::2]  # copies of both neighbours and other classes
    originals = [data.load_image(root / p) for p in relpaths]
    result, expected = audit_with_copies(originals, relpaths, [0] * len(relpaths))
    assert found_pairs(result.near) == expected
    assert len(found_pairs(result.exact)) == 1


@real_data
def test_committed_clean_test_manifest_is_leakage_free():
    rows = audit.read_clean_test_manifest()
    manifest = data.read_manifest()
    training_sums = {e.sha256 for e in manifest if e.split == "Training"}
    testing = {e.relpath: e for e in manifest if e.split == "Testing"}
    assert len(rows) > 100
    for row in rows:
        assert row["file"] in testing and testing[row["file"]].sha256 == row["sha256"]
        assert row["sha256"] not in training_sums
        assert float(row["similarity"]) < audit.NEAR_DUPLICATE_THRESHOLD
        assert row["nearest_training_file"].startswith("Training/")
    clean = audit.load_clean_test(32)
    assert clean.files == [r["file"] for r in rows]
    assert [clean.classes[k] for k in clean.labels.tolist()] == [r["label"] for r in rows]


# ------------------------------------------------------------------------------------------
# The memorisation baseline and the overlay score
# ------------------------------------------------------------------------------------------


def test_nearest_neighbour_lookup_returns_the_label_of_a_copy():
    reference = thumbnails([phantom(seed) for seed in range(6)], 32)
    labels = np.array([0, 1, 2, 3, 0, 1])
    brighter = (reference[[4, 1]].float() * 0.8 + 30).round().to(torch.uint8)   # other gain and offset
    predicted, similarity, index = audit.nearest_neighbour_labels(brighter, reference, labels)
    assert index.tolist() == [4, 1] and predicted.tolist() == [0, 1]
    assert np.all(similarity > 0.99)


def test_nearest_neighbour_lookup_finds_mirrored_copies_only_when_asked():
    reference = thumbnails([phantom(seed) for seed in range(6)], 32)
    labels = np.arange(6)
    mirrored = reference.flip(-1)
    plain, plain_similarity, _ = audit.nearest_neighbour_labels(mirrored, reference, labels)
    found, similarity, _ = audit.nearest_neighbour_labels(mirrored, reference, labels, mirrors=True)
    assert found.tolist() == labels.tolist() and np.all(similarity > 0.999)
    assert np.all(plain_similarity < similarity)   # as is, a mirrored phantom is another picture
    with pytest.raises(ValueError, match="no reference"):
        audit.nearest_neighbour_labels(mirrored, reference[:0], labels[:0])


def test_overlay_score_counts_marks_beside_the_head_only():
    head = np.asarray(data.square_resize(phantom(3), 96)).copy()
    plain = torch.from_numpy(head.copy())
    marked = head.copy()
    marked[86:92, 4:40:4] = 255                       # a row of bright "letters" in the black corner
    inside = head.copy()
    inside[44:50, 40:56:4] = 255                      # the same marks written across the head
    score = audit.overlay_score(torch.stack([plain, torch.from_numpy(marked), torch.from_numpy(inside)]))
    assert score[0] == 0
    assert score[1] > 20
    assert score[2] == 0                              # the score only sees marks beside the head
    assert audit.head_mask(plain)[48, 48] and not audit.head_mask(plain)[90, 5]
