"""Same-slice and same-scan groups, and the grouped train / validation / test split.

The official split of this dataset leaks: most ``Testing/`` images have a copy in
``Training/``, and ``Training/`` holds the same slices several times. An honest benchmark
needs to know which images show **the same slice** (copies, whatever was done to them) and,
more loosely, which come from **the same scan** (neighbouring slices of one acquisition), and
must keep each such group on one side of every boundary. This module finds both levels and
writes the split (``grouped_split.csv`` next to this file).

**Same-slice groups (copies).** Every image becomes an *aligned thumbnail* that ignores what
was done to a copy:

* re-framing and rescaling: the image is cropped to the bounding box of its foreground (the
  head), and that box is stretched to a square, so an added border, a shift, or a zoom of
  the brain all give the same thumbnail;
* monotone contrast changes (gamma, windowing, gain and offset): the foreground pixels are
  replaced by their rank (histogram equalisation) and the background is set to 0;
* mirrors and rotations: each pair is compared in the eight orientations of a square (the
  dihedral group) and the best one counts; small remaining differences of framing by trying
  shifts of ±1 pixel and zooms of ±3 % when re-scoring.

Two thumbnails' Pearson correlation is then their *similarity*. All pairs are compared on
32 px thumbnails (eight matrix products); the candidates at ``SEARCH_THRESHOLD`` or more are
re-scored on 64 px thumbnails. Pairs at ``SLICE_THRESHOLD`` or more are copies, as are
byte-identical files and the near duplicates of ``course_utils.data.audit``; the connected
components of all copy pairs are the same-slice groups.

**Same-scan groups (a patient proxy).** Neighbouring slices of one scan are similar but not
copies. Joining every pair above a lower threshold *chains* (A like B, B like C, ... one
group of thousands of images), so this level uses **average-linkage** clustering: two groups
merge only when the *average* similarity over all their cross pairs reaches
``SCAN_THRESHOLD``, which a chain of loosely linked images never does. The units clustered
are the same-slice groups, so every same-slice group lies inside one same-scan group, and
only images of a common original size (width × height, a trace of the source and the
acquisition) can be joined.

**What this cannot guarantee.** The dataset has no patient identifiers. Same-scan groups
are a proxy built from image similarity: slices of one patient taken far apart, in another
plane (axial / coronal / sagittal) or in another session look different and may land in
different groups, so one *patient* can still appear on both sides of a boundary. Two
patients' similar slices can also be joined. A grouped split removes the copies and most
neighbouring slices from the test set; it does not make it a patient-level split.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.ndimage import binary_fill_holes
from scipy.stats import rankdata

from .audit import audit_dataset, connected_groups, exact_pairs
from .cache import load_images
from .cli import timed_command
from .images import scan_files
from .source import CLASSES, cache_dir, manifest_digest, read_manifest
from .splits import GROUPED_SPLIT_PATH


SOURCE_SIZE = 160          # the cached tensors the thumbnails are cut from
SEARCH_SIZE = 32           # all-pairs search
FINE_SIZE = 64             # re-scoring of the candidates
SEARCH_THRESHOLD = 0.90    # candidates for re-scoring (32 px)
SLICE_THRESHOLD = 0.95     # same slice: aligned 64 px similarity at least this
SCAN_THRESHOLD = 0.80    # same scan: average 32 px similarity between two groups at least this
ZOOMS = (0.97, 1.0, 1.03)   # re-scoring tries these magnifications of one thumbnail
FOREGROUND_LEVEL = 0.1     # foreground: brighter than this share of the image's 99th percentile
SPLIT_FOLDS = 16           # the split: test = 3 folds, validation = 2 folds, train = 11 folds
TEST_FOLDS, VAL_FOLDS = (0, 1, 2), (3, 4)
SPLIT_SEED = 0
ALIGNED_CACHE_VERSION = 2  # bump when the thumbnails below change, so old caches are rebuilt
SPLIT_COLUMNS = ("relpath", "label", "split", "slice_group", "scan_group")


# ------------------------------------------------------------------------------------------
# Aligned thumbnails: blind to framing, scale and monotone contrast
# ------------------------------------------------------------------------------------------


def foreground_threshold(image: torch.Tensor) -> float:
    """Grey level above which a pixel counts as foreground: ``FOREGROUND_LEVEL`` × the 99th
    percentile, at least 10 (JPEG noise in a black background stays below it)."""
    return max(10.0, FOREGROUND_LEVEL * float(torch.quantile(image.float().flatten(), 0.99)))


def foreground_box(image: torch.Tensor, min_share: float = 0.02) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (bottom and right exclusive) of the foreground of one
    image ``(H, W)``: the rows and columns in which more than ``min_share`` of the pixels are
    foreground, so that a few bright specks or a thin text label do not stretch the box.
    The whole image when it has no such rows or columns."""
    mask = image.float() > foreground_threshold(image)
    rows = torch.nonzero(mask.sum(1) > min_share * mask.shape[1]).flatten()
    cols = torch.nonzero(mask.sum(0) > min_share * mask.shape[0]).flatten()
    if len(rows) < 2 or len(cols) < 2:
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_foreground(image: torch.Tensor, size: int) -> torch.Tensor:
    """The foreground box of ``image`` (uint8 ``(H, W)``) stretched to ``size`` × ``size``
    (float32, grey levels kept)."""
    top, bottom, left, right = foreground_box(image)
    box = image.float()[top:bottom, left:right][None, None]
    return F.interpolate(box, (size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def equalise(thumbnails: torch.Tensor) -> torch.Tensor:
    """Foreground pixels replaced by their rank in ``(0, 1]``, background by 0.

    A monotone contrast change (gamma, window, gain and offset) keeps the order of the grey
    levels, hence the ranks: the result is the same. The background (dark pixels connected
    to the edge; dark regions inside the head, which a strong gamma pushes below the level,
    are filled in and stay foreground) is not ranked, because the order of near-black noise
    pixels is random and would lower the score of true copies.
    """
    x = thumbnails.flatten(1).numpy().astype(np.float64)
    mask = np.stack([binary_fill_holes((image > foreground_threshold(image)).numpy()).ravel()
                     for image in thumbnails])
    ranks = rankdata(np.where(mask, x, -1.0), axis=1)              # background ties at the bottom
    n_background = (~mask).sum(1, keepdims=True)
    n_foreground = np.maximum(mask.sum(1, keepdims=True), 1)
    ranked = np.where(mask, (ranks - n_background) / n_foreground, 0.0)
    return torch.from_numpy(ranked.astype(np.float32)).view_as(thumbnails)


def aligned_thumbnails(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, size, size)`` float32: each image cropped to its foreground, stretched to a
    square and equalised (see the module docstring)."""
    if len(images) == 0:
        return torch.zeros(0, size, size)
    return equalise(torch.stack([crop_to_foreground(image, size) for image in images]))


def aligned_cache_path() -> Path:
    return cache_dir() / f"brain-mri-aligned-{SEARCH_SIZE}-{FINE_SIZE}px-v{ALIGNED_CACHE_VERSION}.pt"


def dataset_aligned_thumbnails() -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(files, 32 px, 64 px)`` aligned thumbnails of all 7023 images, in manifest order.

    Cut from the cached 160 px tensors (``course_utils.data``) and cached themselves under
    ``data/cache/`` (about 15 s to build, well under a second to read).
    """
    path = aligned_cache_path()
    if path.is_file():
        payload = torch.load(path, weights_only=True)
        if payload.get("manifest") == manifest_digest():
            return payload["files"], payload["search"], payload["fine"]
    sets = [load_images(split, SOURCE_SIZE) for split in ("Training", "Testing")]
    images = torch.cat([s.images for s in sets])
    files = [f for s in sets for f in s.files]
    search, fine = aligned_thumbnails(images, SEARCH_SIZE), aligned_thumbnails(images, FINE_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as tmp:
        torch.save({"files": files, "search": search, "fine": fine, "manifest": manifest_digest()}, tmp)
    os.replace(tmp.name, path)
    return files, search, fine


# ------------------------------------------------------------------------------------------
# Similarity in eight orientations
# ------------------------------------------------------------------------------------------


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Orientation ``k`` (0–7) of square images ``(..., S, S)``: ``k ≥ 4`` transposes, then
    bit 0 flips left-right and bit 1 flips up-down. The eight mirrors and rotations."""
    if k >= 4:
        x = x.transpose(-1, -2)
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    return x


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (flattened) minus their mean, scaled to length 1: dot product = correlation."""
    x = x.flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def similarity_matrix(thumbnails: torch.Tensor, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """``(similarity (N, N), orientation (N, N) uint8)``: for every pair, the correlation of
    ``i`` with the best of the eight orientations of ``j``. The diagonal is set to -1."""
    n = len(thumbnails)
    query = unit_rows(thumbnails)
    refs = [unit_rows(dihedral(thumbnails, k)) for k in range(8)]
    similarity = torch.empty(n, n)
    orientation = torch.empty(n, n, dtype=torch.uint8)
    for start in range(0, n, block):
        best, which = torch.stack([query[start:start + block] @ r.T for r in refs]).max(dim=0)
        similarity[start:start + block] = best
        orientation[start:start + block] = which.to(torch.uint8)
    similarity.fill_diagonal_(-1.0)
    return similarity, orientation


def zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """``(N, S, S)`` images magnified by ``factor`` about their centre (bilinear, same size)."""
    if factor == 1.0:
        return images
    theta = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, [len(images), 1, *images.shape[1:]], align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0]


def shifted_similarity(a: torch.Tensor, b: torch.Tensor, shift: int = 1,
                       zooms: tuple[float, ...] = ZOOMS) -> torch.Tensor:
    """Correlation of ``a[n]`` with ``b[n]`` (both ``(N, S, S)``), best over shifts of ``a``
    by up to ``shift`` pixels and zooms of ``b`` by ``zooms``: the foreground box of a copy can
    differ by a pixel or two (a soft edge crosses the foreground level elsewhere after a
    contrast change), which shifts and rescales its thumbnail a little. A border of ``shift``
    pixels is left out so every shift compares as many pixels."""
    s = a.shape[-1]
    best = torch.full((len(a),), -2.0)
    for factor in zooms:
        inner = unit_rows(zoom(b, factor)[:, shift:s - shift, shift:s - shift])
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                window = a[:, shift + dy:s - shift + dy, shift + dx:s - shift + dx]
                best = torch.maximum(best, (unit_rows(window) * inner).sum(1))
    return best


def rescore(fine: torch.Tensor, i: torch.Tensor, j: torch.Tensor, orientation: torch.Tensor,
            chunk: int = 4096) -> torch.Tensor:
    """Similarity of the pairs ``(i, j)`` on the fine thumbnails, ``j`` in the orientation the
    search found, best over ±1 pixel shifts and the zooms ``ZOOMS``."""
    out = []
    for start in range(0, len(i), chunk):
        a, b, o = i[start:start + chunk], j[start:start + chunk], orientation[start:start + chunk].long()
        other = torch.empty(len(b), *fine.shape[1:])
        for k in range(8):
            chosen = o == k
            other[chosen] = dihedral(fine[b[chosen]], k)
        out.append(shifted_similarity(fine[a], other))
    return torch.cat(out) if out else torch.zeros(0)


# ------------------------------------------------------------------------------------------
# The two levels of groups
# ------------------------------------------------------------------------------------------


def robust_pairs(search: torch.Tensor, fine: torch.Tensor,
                 similarity: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Candidate pairs ``i < j`` (32 px similarity ≥ ``SEARCH_THRESHOLD``) with their aligned
    64 px similarity: ``{"i", "j", "search", "fine", "orientation"}``."""
    matrix, orientation = similarity if similarity is not None else similarity_matrix(search)
    i, j = torch.nonzero(torch.triu(matrix >= SEARCH_THRESHOLD, diagonal=1), as_tuple=True)
    o = orientation[i, j]
    return {"i": i.numpy(), "j": j.numpy(), "search": matrix[i, j].numpy(),
            "fine": rescore(fine, i, j, o).numpy(), "orientation": o.numpy()}


def slice_groups(n: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Same-slice group id per image (0, 1, ...; singletons get their own id): the connected
    components of the union of the copy pairs ``[(i, j), ...]``, numbered in order of their
    first member."""
    i = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
    j = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
    root = np.arange(n)
    for group in connected_groups(n, i, j):
        root[group] = min(group)
    _, ids = np.unique(root, return_inverse=True)
    return ids


def scan_groups(slice_ids: np.ndarray, similarity: torch.Tensor, sizes: list[tuple[int, int]],
                threshold: float = SCAN_THRESHOLD) -> np.ndarray:
    """Same-scan group id per image: average-linkage clustering of the same-slice groups.

    The similarity of two same-slice groups is the best similarity between their members
    (they are copies, so any member stands for the group); it is 0 when the groups share no
    original image size. Average linkage merges two clusters only while the mean similarity
    over all their cross pairs is at least ``threshold``, so it does not chain.
    """
    n_units = int(slice_ids.max()) + 1 if len(slice_ids) else 0
    if n_units < 2:
        return slice_ids.copy()
    order = torch.as_tensor(np.argsort(slice_ids, kind="stable"))
    unit = torch.as_tensor(slice_ids)
    # best similarity between units: max over rows, then over columns, of the member matrix
    with warnings.catch_warnings():  # index_reduce_ is marked beta; its result is exact
        warnings.simplefilter("ignore", UserWarning)
        rows = torch.full((n_units, len(slice_ids)), -1.0).index_reduce_(
            0, unit[order], similarity[order].float(), "amax", include_self=True)
        best = torch.full((n_units, n_units), -1.0).index_reduce_(
            1, unit, rows, "amax", include_self=True)
    size_ids = {s: k for k, s in enumerate(sorted(set(sizes)))}
    has_size = torch.zeros(n_units, len(size_ids))
    has_size[unit, torch.tensor([size_ids[s] for s in sizes])] = 1
    same_size = (has_size @ has_size.T) > 0
    best = torch.where(same_size, best.clamp(0, 1), torch.zeros(()))
    best = torch.maximum(best, best.T).numpy().astype(np.float64)
    distance = 1.0 - best[np.triu_indices(n_units, 1)]
    tree = linkage(distance, method="average")
    clusters = fcluster(tree, t=1.0 - threshold, criterion="distance")
    # renumber in order of each cluster's first image
    per_image = clusters[slice_ids]
    _, first = np.unique(per_image, return_index=True)
    rank = {c: r for r, c in enumerate(per_image[np.sort(first)])}
    return np.array([rank[c] for c in per_image])


def conflicting_groups(group_ids: np.ndarray, labels: np.ndarray) -> list[list[int]]:
    """Groups whose members carry more than one label, as lists of image indices."""
    members: dict[int, list[int]] = {}
    for index, g in enumerate(np.asarray(group_ids).tolist()):
        members.setdefault(g, []).append(index)
    return [m for m in members.values() if len({int(labels[k]) for k in m}) > 1]


@dataclass
class Grouping:
    """Both levels of groups for ``files`` (indices are positions in ``files``)."""
    files: list[str]
    labels: np.ndarray
    slice_group: np.ndarray
    scan_group: np.ndarray
    pairs: dict[str, np.ndarray]     # robust candidate pairs and their scores
    old_pairs: set[tuple[int, int]]  # copy pairs of course_utils.data.audit (exact + near)
    copy_pairs: set[tuple[int, int]]  # all copy pairs: old + robust at SLICE_THRESHOLD

    def summary(self) -> dict[str, int]:
        """Counts for the report: groups, sizes, what the robust matching adds."""
        slice_sizes = np.bincount(self.slice_group)
        scan_sizes = np.bincount(self.scan_group)
        old_images = {a for p in self.old_pairs for a in p}
        new_images = {a for p in self.copy_pairs for a in p}
        return {
            "images": len(self.files),
            "copy pairs (old audit: exact + near)": len(self.old_pairs),
            "copy pairs (robust, incl. old)": len(self.copy_pairs),
            "images with a copy (old audit)": len(old_images),
            "images with a copy (robust)": len(new_images),
            "same-slice groups": len(slice_sizes),
            "same-slice groups of 2+": int((slice_sizes > 1).sum()),
            "largest same-slice group": int(slice_sizes.max()),
            "same-scan groups": len(scan_sizes),
            "same-scan groups of 2+": int((scan_sizes > 1).sum()),
            "largest same-scan group": int(scan_sizes.max()),
            "same-slice groups with 2+ labels": len(conflicting_groups(self.slice_group, self.labels)),
            "same-scan groups with 2+ labels": len(conflicting_groups(self.scan_group, self.labels)),
        }


def group_dataset() -> Grouping:
    """Same-slice and same-scan groups of all 7023 images (about a minute on two cores)."""
    files, search, fine = dataset_aligned_thumbnails()
    manifest = read_manifest()
    if [e.relpath for e in manifest] != files:
        raise RuntimeError(f"{aligned_cache_path()} does not follow the manifest order; delete it and rerun")
    labels = np.array([CLASSES.index(e.label) for e in manifest])
    audit = audit_dataset()
    exact = exact_pairs([e.sha256 for e in manifest])
    old_pairs = set(zip(audit.near["i"].tolist(), audit.near["j"].tolist())) | set(
        zip(exact["i"].tolist(), exact["j"].tolist()))
    matrix, orientation = similarity_matrix(search)
    pairs = robust_pairs(search, fine, (matrix, orientation))
    robust = pairs["fine"] >= SLICE_THRESHOLD
    copies = old_pairs | set(zip(pairs["i"][robust].tolist(), pairs["j"][robust].tolist()))
    copy_array = np.array(sorted(copies), dtype=np.int64).reshape(-1, 2)
    slice_ids = slice_groups(len(files), [(copy_array[:, 0], copy_array[:, 1])])
    sizes = [(info.width, info.height) for info in scan_files()]
    scan_ids = scan_groups(slice_ids, matrix, sizes)
    return Grouping(files, labels, slice_ids, scan_ids, pairs, old_pairs, copies)


# ------------------------------------------------------------------------------------------
# The grouped split
# ------------------------------------------------------------------------------------------


def grouped_split(grouping: Grouping, seed: int = SPLIT_SEED) -> np.ndarray:
    """``"train"`` / ``"val"`` / ``"test"`` / ``"excluded"`` per image.

    Images of same-slice groups with conflicting labels are ``"excluded"`` (the same slice
    cannot be two diagnoses; we cannot tell which label is right). The rest is split by
    scikit-learn's ``StratifiedGroupKFold`` into ``SPLIT_FOLDS`` folds, grouped by same-scan
    group and stratified by class: folds ``TEST_FOLDS`` are the test set (about 3/16 of
    the images, the size of the official ``Testing/`` folder), folds ``VAL_FOLDS`` the
    validation set (2/16), the rest the training set. No same-scan group, hence no same-slice
    group, crosses a boundary.
    """
    from sklearn.model_selection import StratifiedGroupKFold  # here: heavy, only when needed

    split = np.full(len(grouping.files), "train", dtype=object)
    for members in conflicting_groups(grouping.slice_group, grouping.labels):
        split[members] = "excluded"
    kept = np.flatnonzero(split != "excluded")
    folds = StratifiedGroupKFold(n_splits=SPLIT_FOLDS, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(folds.split(kept, grouping.labels[kept], grouping.scan_group[kept])):
        if fold in TEST_FOLDS:
            split[kept[held]] = "test"
        elif fold in VAL_FOLDS:
            split[kept[held]] = "val"
    return split


def split_rows(grouping: Grouping, split: np.ndarray) -> list[tuple[str, str, str, int, int]]:
    """The manifest rows ``SPLIT_COLUMNS``, one per image, in manifest order."""
    return [(f, CLASSES[int(label)], str(s), int(g), int(h)) for f, label, s, g, h in
            zip(grouping.files, grouping.labels, split, grouping.slice_group, grouping.scan_group)]


def write_grouped_split(path: Path = GROUPED_SPLIT_PATH, grouping: Grouping | None = None) -> Grouping:
    """Compute the groups and the split and write them to ``path`` (deterministic)."""
    grouping = grouping or group_dataset()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows(split_rows(grouping, grouped_split(grouping)))
    return grouping


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------
# Command line: python -m course_utils.data.grouping write-split | report
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    command, grouping = timed_command("course_utils.data.grouping", __doc__, ["write-split", "report"], argv,
                                      group_dataset, "grouped")
    for key, value in grouping.summary().items():
        print(f"{key}: {value}")
    split = grouped_split(grouping)
    for name in ("train", "val", "test", "excluded"):
        chosen = split == name
        counts = Counter(CLASSES[int(k)] for k in grouping.labels[chosen])
        print(f"{name}: {int(chosen.sum())} images, {len(set(grouping.scan_group[chosen]))} scan groups, "
              + ", ".join(f"{c} {counts[c]}" for c in CLASSES))
    if command == "write-split":
        write_grouped_split(GROUPED_SPLIT_PATH, grouping)
        print(f"wrote {GROUPED_SPLIT_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
