"""Auditing the dataset: duplicates, leakage between Training and Testing, and shortcuts.

**Exact duplicates** share their bytes, hence their SHA-256 checksum: the manifest already
lists them, no image needs decoding.

**Near duplicates** are the same slice stored twice with changes: re-encoded, resized,
re-contrasted, sharpened or mirrored. Their bytes differ, so checksums miss them. We
compare small thumbnails instead: each image, padded to a square and resized (the course's
cached tensors), becomes a vector of pixels with its mean removed and its length scaled to 1,
so the dot product of two vectors is their *correlation*: 1 for the same picture whatever its
brightness offset and contrast gain, lower for different pictures. Mirrored copies are common
in this dataset, so each pair is compared in four orientations (as is, flipped left-right,
flipped up-down, rotated by 180°) and the best one counts.

Comparing all 7023 images with each other in four orientations is four matrix products of
7023 × 7023 thumbnails: done at 32 px (1024 numbers per image) it takes a few seconds, and it
finds every candidate pair; the candidates are then re-scored at 64 px (4096 numbers), which
tells neighbouring slices of one scan apart from true copies much better (*coarse to fine*).
Pairs at or above ``NEAR_DUPLICATE_THRESHOLD`` are near duplicates; lesson 13 shows the pairs
just above and below it, which is how the threshold was chosen.

**The near-duplicate-free Testing images** are the ``Testing/`` images that have neither an
exact nor a near duplicate anywhere in ``Training/``. They are listed in
``clean_test_manifest.csv`` next to this file; ``load_clean_test(size)`` returns them as an
``ImageSet``. They are *not* a leakage-free test set: copies this audit misses and
neighbouring slices of one scan remain, and the set keeps hardly any *notumor* images. The
course's benchmark is the grouped split (``course_utils.data.grouping``).

**Copies this audit misses** (rotated by 90°, re-framed, re-contrasted beyond a gain) and
**neighbouring slices of one scan** are found by ``course_utils.data.grouping``, which builds
same-slice and same-scan groups on top of these pairs and the grouped split.

**A memorisation baseline**: ``nearest_neighbour_labels`` classifies an image by the label of
its most similar known image, with no training at all. On a test set full of copies of the
training images it scores high by memory alone; that score is the yardstick a trained
model's accuracy on the same split has to be read against.

**Shortcuts**: ``shortcut_features`` describes each file by what has nothing to do with
anatomy (size, aspect, black border, format, colour mode, bytes), ``overlay_score`` finds
marks written onto a slice outside the head (text, frames, scale bars, logos, watermarks),
and ``ct_score`` flags slices that look like CT rather than MRI (a bright, saturated skull).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..files import atomic_write_csv
from .cache import ImageSet, load_images
from .cli import timed_command
from .source import CLASSES, SPLITS, read_manifest


NEAR_DUPLICATE_THRESHOLD = 0.99  # correlation of 64 px thumbnails, best of four orientations
FINE_SIZE = 64
COARSE_SIZE = 32
# In this dataset every pair at 0.99 or more at 64 px scores 0.985 or more at 32 px (low
# resolution blurs differences away); 0.96 leaves a wide safety margin.
COARSE_THRESHOLD = 0.96
ORIENTATIONS = ("as is", "flipped left-right", "flipped up-down", "rotated 180°")
CLEAN_TEST_MANIFEST = Path(__file__).with_name("clean_test_manifest.csv")


# ------------------------------------------------------------------------------------------
# Thumbnails and their similarity
# ------------------------------------------------------------------------------------------


def orientations(images: torch.Tensor) -> list[torch.Tensor]:
    """The images ``(N, H, W)`` as is, flipped left-right, flipped up-down, rotated 180°."""
    return [images, images.flip(-1), images.flip(-2), images.flip(-1).flip(-2)]


def descriptors(images: torch.Tensor) -> torch.Tensor:
    """``(N, H·W)`` float32 rows: each image's pixels minus their mean, scaled to length 1.

    The dot product of two rows is the Pearson correlation of the two images: unchanged by a
    brightness offset or a contrast gain, 1 only for the same picture. A blank image (all
    pixels equal) gets a zero row and matches nothing.
    """
    x = images.float().flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def best_orientation_similarity(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlation of every image in ``a`` with every image in ``b``, best of four orientations
    of ``b``: ``(similarity (Na, Nb), orientation index (Na, Nb))``."""
    da = descriptors(a)
    scores = torch.stack([da @ descriptors(o).T for o in orientations(b)])
    return scores.max(dim=0)


def nearest_neighbours(query: torch.Tensor, reference: torch.Tensor, block: int = 512,
                       exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query image, its most similar reference image (any of four orientations).

    Returns ``(similarity, index into reference, orientation index)``, one of each per query.
    ``exclude_self``: query and reference are the same set; an image is not its own neighbour.
    """
    ref = [descriptors(o) for o in orientations(reference)]
    sims, index, orient = [], [], []
    for start in range(0, len(query), block):
        q = descriptors(query[start : start + block])
        scores = torch.stack([q @ r.T for r in ref])           # (4, b, Nr)
        best, which = scores.max(dim=0)
        if exclude_self:
            rows = torch.arange(len(q))
            best[rows, rows + start] = -2.0
        value, j = best.max(dim=1)
        sims.append(value)
        index.append(j)
        orient.append(which[torch.arange(len(q)), j])
    return torch.cat(sims).numpy(), torch.cat(index).numpy(), torch.cat(orient).numpy()


def similar_pairs(fine: torch.Tensor, coarse: torch.Tensor | None = None, threshold: float = NEAR_DUPLICATE_THRESHOLD,
                  coarse_threshold: float = COARSE_THRESHOLD, block: int = 1024) -> dict[str, np.ndarray]:
    """Every pair ``i < j`` whose fine thumbnails correlate at ``threshold`` or more.

    Coarse to fine: all pairs are scored on the ``coarse`` thumbnails (default: ``fine``
    halved), and only those above ``coarse_threshold`` are re-scored on ``fine``. Returns
    ``{"i", "j", "similarity", "orientation"}`` arrays (orientation of ``j`` that matches ``i``).
    """
    if coarse is None:
        coarse = F.avg_pool2d(fine.float()[:, None], 2)[:, 0]
    n = len(fine)
    ref = [descriptors(o) for o in orientations(coarse)]
    rows, cols = [], []
    for start in range(0, n, block):
        q = ref[0][start : start + block]
        best = torch.stack([q @ r.T for r in ref]).amax(dim=0)   # (b, n)
        r, c = torch.nonzero(best >= coarse_threshold, as_tuple=True)
        keep = r + start < c                                      # each pair once, no self pairs
        rows.append(r[keep] + start)
        cols.append(c[keep])
    i, j = torch.cat(rows), torch.cat(cols)
    fine_desc = [descriptors(o) for o in orientations(fine)]
    similarity, orientation = [], []
    for start in range(0, len(i), 8192):  # re-score the candidates in chunks (bounded memory)
        a, b = i[start : start + 8192], j[start : start + 8192]
        scores = torch.stack([(fine_desc[0][a] * d[b]).sum(dim=1) for d in fine_desc])   # (4, chunk)
        value, which = scores.max(dim=0)
        similarity.append(value)
        orientation.append(which)
    similarity = torch.cat(similarity) if similarity else torch.zeros(0)
    orientation = torch.cat(orientation) if orientation else torch.zeros(0, dtype=torch.long)
    keep = similarity >= threshold
    return {"i": i[keep].numpy(), "j": j[keep].numpy(), "similarity": similarity[keep].numpy(),
            "orientation": orientation[keep].numpy()}


def connected_groups(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components (of size ≥ 2) of the graph whose edges are the pairs ``(i, j)``.

    If A looks like B and B like C, all three are one group, even when A and C differ more
    (union-find with path halving).
    """
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(np.asarray(i).tolist(), np.asarray(j).tolist()):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members = defaultdict(list)
    for a in range(n):
        members[root(a)].append(a)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


# ------------------------------------------------------------------------------------------
# The audit of the whole dataset
# ------------------------------------------------------------------------------------------


@dataclass
class DuplicateAudit:
    """Exact and near duplicates among ``files`` (both splits), and what they imply.

    ``exact`` and ``near`` are pair tables ``{"i", "j", ...}`` (indices into ``files``);
    near pairs include the exact ones. ``groups`` are the connected groups of near
    duplicates. ``test_neighbour`` describes, for every ``Testing`` image, its most similar
    ``Training`` image: ``{"index", "similarity", "orientation"}`` (indices into ``files``).
    """
    files: list[str]
    labels: np.ndarray
    splits: np.ndarray
    checksums: list[str]
    exact: dict[str, np.ndarray]
    near: dict[str, np.ndarray]
    groups: list[list[int]]
    test_neighbour: dict[str, np.ndarray]
    threshold: float

    def _partners(self, pairs: dict[str, np.ndarray], scope: str) -> np.ndarray:
        """Per image: does it have a partner in ``pairs`` within ``scope``?

        ``scope``: ``"Training"`` / ``"Testing"`` (both images of the pair in that split) or
        ``"across"`` (a Testing image whose partner is in Training).
        """
        has = np.zeros(len(self.files), dtype=bool)
        si, sj = self.splits[pairs["i"]], self.splits[pairs["j"]]
        if scope == "across":
            cross = si != sj
            for a, b in zip(pairs["i"][cross], pairs["j"][cross]):
                has[a if self.splits[a] == "Testing" else b] = True
        else:
            inside = (si == scope) & (sj == scope)
            has[pairs["i"][inside]] = True
            has[pairs["j"][inside]] = True
        return has

    def counts(self) -> dict[str, dict[str, int]]:
        """Per class: how many images have an exact / near duplicate within Training, within
        Testing, and (Testing images) in Training. Near includes exact."""
        table = {}
        for k, name in enumerate(CLASSES):
            in_class = self.labels == k
            row = {"Training images": int((in_class & (self.splits == "Training")).sum()),
                   "Testing images": int((in_class & (self.splits == "Testing")).sum())}
            for kind, pairs in (("exact", self.exact), ("near", self.near)):
                for scope, label in (("Training", "within Training"), ("Testing", "within Testing"),
                                     ("across", "Testing with a copy in Training")):
                    row[f"{kind}: {label}"] = int((self._partners(pairs, scope) & in_class).sum())
            table[name] = row
        table["total"] = {key: sum(r[key] for r in table.values()) for key in next(iter(table.values()))}
        return table

    def leaked_test(self, threshold: float | None = None) -> np.ndarray:
        """Boolean per file: a Testing image with an exact copy, or a Training neighbour at
        ``threshold`` (default: the audit's) or more."""
        threshold = self.threshold if threshold is None else threshold
        leaked = self._partners(self.exact, "across")
        test = np.flatnonzero(self.splits == "Testing")
        leaked[test[self.test_neighbour["similarity"] >= threshold]] = True
        return leaked

    def clean_test_indices(self, threshold: float | None = None) -> np.ndarray:
        """Indices (into ``files``) of the Testing images without any copy in Training."""
        return np.flatnonzero((self.splits == "Testing") & ~self.leaked_test(threshold))

    def label_conflicts(self) -> list[tuple[str, str, float]]:
        """Near-duplicate pairs whose two files carry different labels: ``(file, file, similarity)``."""
        differ = self.labels[self.near["i"]] != self.labels[self.near["j"]]
        return [(self.files[a], self.files[b], float(s)) for a, b, s in
                zip(self.near["i"][differ], self.near["j"][differ], self.near["similarity"][differ])]

    def group_summary(self) -> dict[str, int]:
        """How big the groups are and how many cross the split or mix labels."""
        return {
            "groups": len(self.groups),
            "images in groups": sum(map(len, self.groups)),
            "largest group": max(map(len, self.groups), default=0),
            "groups spanning Training and Testing": sum(len({self.splits[a] for a in g}) == 2 for g in self.groups),
            "groups with more than one label": sum(len({int(self.labels[a]) for a in g}) > 1 for g in self.groups),
        }


def exact_pairs(checksums: list[str]) -> dict[str, np.ndarray]:
    """All pairs ``i < j`` of files with the same checksum (the same bytes)."""
    by_sum = defaultdict(list)
    for index, checksum in enumerate(checksums):
        by_sum[checksum].append(index)
    pairs = [(a, b) for group in by_sum.values() for x, a in enumerate(group) for b in group[x + 1:]]
    i, j = (np.array(v, dtype=np.int64) for v in zip(*pairs)) if pairs else (np.zeros(0, np.int64),) * 2
    return {"i": i, "j": j}


def audit_images(fine: torch.Tensor, labels, files: list[str], checksums: list[str],
                 coarse: torch.Tensor | None = None, threshold: float = NEAR_DUPLICATE_THRESHOLD) -> DuplicateAudit:
    """Audit any set of images (``fine``: ``uint8 (N, H, W)`` thumbnails, e.g. 64 px).

    ``files`` start with their split (``"Training/..."`` or ``"Testing/..."``);
    ``checksums`` are the files' SHA-256 (equal checksums = exact duplicates).
    """
    splits = np.array([f.split("/", 1)[0] for f in files])
    labels = np.asarray(labels)
    near = similar_pairs(fine, coarse, threshold)
    exact = exact_pairs(checksums)
    test, train = np.flatnonzero(splits == "Testing"), np.flatnonzero(splits == "Training")
    if len(test) and len(train):
        sim, index, orient = nearest_neighbours(fine[test], fine[train])
        neighbour = {"index": train[index], "similarity": sim, "orientation": orient}
    else:
        neighbour = {"index": np.zeros(0, np.int64), "similarity": np.zeros(0), "orientation": np.zeros(0, np.int64)}
    both_i = np.concatenate([near["i"], exact["i"]])
    both_j = np.concatenate([near["j"], exact["j"]])
    return DuplicateAudit(files=list(files), labels=labels, splits=splits, checksums=list(checksums),
                          exact=exact, near=near, groups=connected_groups(len(files), both_i, both_j),
                          test_neighbour=neighbour, threshold=threshold)


def audit_dataset(threshold: float = NEAR_DUPLICATE_THRESHOLD) -> DuplicateAudit:
    """Audit all 7023 images (both splits) from the cached 32 and 64 px tensors.

    Takes several seconds on two CPU cores (the first call may also decode a cache).
    """
    checksum_of = {e.relpath: e.sha256 for e in read_manifest()}
    fine_sets = [load_images(split, FINE_SIZE) for split in SPLITS]
    fine = torch.cat([s.images for s in fine_sets])
    coarse = torch.cat([load_images(split, COARSE_SIZE).images for split in SPLITS])
    files = [f for s in fine_sets for f in s.files]
    labels = torch.cat([s.labels for s in fine_sets]).numpy()
    return audit_images(fine, labels, files, [checksum_of[f] for f in files], coarse, threshold)


# ------------------------------------------------------------------------------------------
# The near-duplicate-free Testing images, as a committed file
# ------------------------------------------------------------------------------------------

CLEAN_COLUMNS = ("file", "label", "sha256", "nearest_training_file", "similarity")


def write_clean_test_manifest(audit: DuplicateAudit, path: Path = CLEAN_TEST_MANIFEST) -> int:
    """Write the near-duplicate-free Testing files, each with its nearest Training image and
    their similarity (below the threshold, by construction). Returns the number of rows."""
    test = np.flatnonzero(audit.splits == "Testing")
    position = {index: p for p, index in enumerate(test)}
    rows = []
    for index in audit.clean_test_indices():
        p = position[index]
        rows.append((audit.files[index], CLASSES[int(audit.labels[index])], audit.checksums[index],
                     audit.files[int(audit.test_neighbour["index"][p])],
                     f"{float(audit.test_neighbour['similarity'][p]):.4f}"))
    atomic_write_csv(path, CLEAN_COLUMNS, rows)
    return len(rows)


def read_clean_test_manifest(path: Path = CLEAN_TEST_MANIFEST) -> list[dict[str, str]]:
    """The rows of the clean-test manifest (see ``write_clean_test_manifest``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{path} is missing. Recreate it with:  python -m course_utils.data.audit write-clean-test")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_clean_test(size: int, path: Path = CLEAN_TEST_MANIFEST) -> ImageSet:
    """The near-duplicate-free Testing images at ``size`` px (listed in the manifest): Testing
    images without an exact or near copy in Training. Not leakage-free (see the module
    docstring); the course's test set is the grouped split's."""
    wanted = [row["file"] for row in read_clean_test_manifest(path)]
    test = load_images("Testing", size)
    position = {f: i for i, f in enumerate(test.files)}
    missing = [f for f in wanted if f not in position]
    if missing:
        raise ValueError(f"{len(missing)} files of {path.name} are not in Testing/, e.g. {missing[0]}")
    return test.subset([position[f] for f in wanted])


# ------------------------------------------------------------------------------------------
# A memorisation baseline: the label of the most similar known image
# ------------------------------------------------------------------------------------------


def nearest_neighbour_labels(query: torch.Tensor, reference: torch.Tensor, reference_labels,
                             mirrors: bool = False, block: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label each ``query`` image with the label of its most similar ``reference`` image (1-NN).

    Nothing is trained: the "model" is the reference images and their labels, looked up.
    Similarity is the correlation of the thumbnails (``descriptors``), so a copy with another
    brightness or contrast still matches; ``mirrors=True`` also tries the three other
    orientations the audit tries. A test image that has a copy among the references gets the
    copy's label, so on a test set full of copies this lookup scores high by memory alone.

    Returns ``(predicted labels, similarity, index into reference)``, one of each per query.
    """
    labels = np.asarray(reference_labels)
    if len(reference) == 0:
        raise ValueError("no reference images to look up")
    if mirrors:
        similarity, index, _ = nearest_neighbours(query, reference, block=block)
    else:
        ref = descriptors(reference)
        best = [(descriptors(query[start:start + block]) @ ref.T).max(dim=1) for start in range(0, len(query), block)]
        similarity = torch.cat([b.values for b in best]).numpy() if best else np.zeros(0, np.float32)
        index = torch.cat([b.indices for b in best]).numpy() if best else np.zeros(0, np.int64)
    return labels[index], similarity, index


# ------------------------------------------------------------------------------------------
# Shortcuts: what predicts the class without any anatomy
# ------------------------------------------------------------------------------------------

SHORTCUT_FEATURES = ("width", "height", "aspect (w/h)", "black share", "is PNG", "mode L", "mode RGB",
                     "kilobytes per megapixel")


def black_share(images: torch.Tensor, level: int = 10) -> np.ndarray:
    """Share of (near-)black pixels per image ``(N, H, W)``: background and padding."""
    return (images <= level).float().mean(dim=(1, 2)).numpy()


def shortcut_features(infos, images: torch.Tensor) -> np.ndarray:
    """``(N, 8)`` features of each file that say nothing about anatomy (``SHORTCUT_FEATURES``).

    ``infos``: ``course_utils.data.scan_files()`` entries (header facts: format, mode, size,
    bytes) in the same order as ``images`` (the cached, padded thumbnails, for the share of
    black pixels the model actually sees). Kilobytes per megapixel measures compression.
    """
    rows = []
    for info in infos:
        rows.append([info.width, info.height, info.width / info.height, 0.0, info.format == "PNG",
                     info.mode == "L", info.mode == "RGB", info.bytes / 1024 / (info.width * info.height / 1e6)])
    features = np.array(rows, dtype=np.float64)
    features[:, 3] = black_share(images)
    return features


def head_mask(image: torch.Tensor, level: int = 25, min_share: float = 0.02, margin: int = 6) -> np.ndarray:
    """Boolean ``(H, W)``: the head in one uint8 image and a ``margin`` of pixels around it.

    The head is every bright region (above ``level``) covering at least ``min_share`` of the
    image (the brain, and a skull ring that the dark bone may separate from it), closed,
    with its holes filled; small bright marks elsewhere are left out.
    """
    bright = image.numpy() > level
    regions, n = ndimage.label(bright)
    if n == 0:
        return np.zeros(bright.shape, dtype=bool)
    sizes = ndimage.sum(bright, regions, range(1, n + 1))
    large = np.isin(regions, 1 + np.flatnonzero(sizes >= min_share * bright.size))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(large, iterations=3))
    return ndimage.binary_dilation(head, iterations=margin) if margin else head


def overlay_score(images: torch.Tensor, edge: float = 150.0, level: int = 25, margin: int = 6) -> np.ndarray:
    """Per image ``(N, H, W)`` uint8: how many pixels outside the head (``head_mask``) lie on a
    strong edge (Sobel gradient magnitude above ``edge``).

    The background of a plain slice is black or faint noise: no strong edges. Text, a frame,
    a scale bar, a logo or a watermark written onto the image makes them. The score finds
    marks *beside* the head only; one written across the brain is missed, so look at the
    images it ranks first, and do not read a low score as "no mark".
    """
    scores = np.zeros(len(images))
    for n, image in enumerate(images):
        x = image.numpy().astype(np.float64)
        gradient = np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1))
        scores[n] = ((gradient > edge) & ~head_mask(image, level, margin=margin)).sum()
    return scores


def ct_score(images: torch.Tensor, head_level: int = 20, saturated: int = 240) -> np.ndarray:
    """How CT-like each slice looks: the share of head pixels that are saturated (≥ ``saturated``).

    On CT shown in a brain window, bone (the skull) is far denser than anything else and is
    displayed pure white, a thick saturated ring; on the T1/T2 MRI of this dataset cortical
    bone is dark and few pixels saturate. A heuristic, to be checked by eye.
    """
    x = images.float()
    head = (x > head_level).float().sum(dim=(1, 2)).clamp_min(1)
    return ((x >= saturated).float().sum(dim=(1, 2)) / head).numpy()


# ------------------------------------------------------------------------------------------
# Command line: python -m course_utils.data.audit write-clean-test
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    command, audit = timed_command("course_utils.data.audit", __doc__, ["write-clean-test", "report"], argv,
                                   audit_dataset, "audited")
    if command == "write-clean-test":
        n = write_clean_test_manifest(audit)
        print(f"wrote {n} near-duplicate-free Testing files to {CLEAN_TEST_MANIFEST}")
    else:
        for name, row in audit.counts().items():
            print(name, row)
        print(audit.group_summary())
        print(Counter(CLASSES[int(audit.labels[i])] for i in audit.clean_test_indices()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
