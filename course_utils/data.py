"""The brain-tumour MRI dataset: find it, verify it, decode it once, serve it fast.

The dataset is the Kaggle *Brain Tumor MRI Dataset* (Msoud Nickparvar, 2021; CC0), which
merges three public sources (figshare, SARTAJ and Br35H). It has a ``Training/`` and a
``Testing/`` folder, each with one sub-folder per class.

Where the data comes from, in this order:

1. the folder named by the environment variable ``BRAIN_MRI_DIR``;
2. the project's own cache, ``data/brain-tumor-mri/``;
3. a download (``python -m course_utils.data download``): kagglehub first, then a public
   GitHub mirror with the same bytes.

Whatever the source, every file is checked against ``course_utils/manifest.csv`` (name,
class, split, size and SHA-256) before it is used. Images are then decoded once, made
grayscale and square, resized, and cached as one ``uint8`` tensor per resolution under
``data/cache/``, so that every later lesson loads the whole dataset in about a second.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import (CourseFileError, UnreadableFileError, atomic_torch_save, atomic_write_csv, dict_with,
                    pid_alive,
                    read_or_explain, torch_load)

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
SPLITS: tuple[str, ...] = ("Training", "Testing")
DATA_ENV = "BRAIN_MRI_DIR"
KAGGLE_HANDLE = "masoudnickparvar/brain-tumor-mri-dataset"
GITHUB_MIRROR = "https://github.com/ricardotran92/Brain-Tumor-MRI-Dataset"
MANIFEST_PATH = Path(__file__).with_name("manifest.csv")
GROUPED_SPLIT_PATH = Path(__file__).with_name("grouped_split.csv")
# Bump when the decoding or resizing below changes, so old caches are rebuilt.
CACHE_VERSION = 1
# square_resize pads to a square before resizing; this caps the square it may allocate
# (the dataset's largest, 1920 × 1920, is 3.7 megapixels).
MAX_SQUARE_PIXELS = 100_000_000

HOW_TO_GET_IT = f"""How to get the dataset (about 160 MB, 7023 images):
  * download it into the project:   python -m course_utils.data download
  * or, if you already have a copy:  export {DATA_ENV}=/path/to/folder
    (the folder that holds Training/ and Testing/)."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is in none of the places the course looks."""


class DatasetIncompleteError(RuntimeError):
    """The dataset folder exists but files are missing or differ from the manifest."""


class DataDirError(DatasetNotFoundError):
    """``$BRAIN_MRI_DIR`` is set but does not name a dataset folder (a typo, a moved copy)."""


class ImageLoadError(ValueError):
    """A file could not be read as an image; the message names the file."""


# --------------------------------------------------------------------------------------
# Where things live
# --------------------------------------------------------------------------------------


def project_root() -> Path:
    """The course's top folder (the one with ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


def shown_path(path: str | Path) -> str:
    """``path`` as a learner should read it: relative to the project folder when inside it.

    Printed outputs then say ``checkpoints/full/lesson10_transfer.pt`` on every machine instead
    of the absolute path of one computer.
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def data_home() -> Path:
    """Folder for the downloaded dataset and the decoded caches (``data/`` by default)."""
    return Path(os.environ.get("COURSE_DATA_HOME", project_root() / "data"))


def cache_dir() -> Path:
    return data_home() / "cache"


# --------------------------------------------------------------------------------------
# The manifest: what a complete, unaltered copy of the dataset contains
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    split: str
    label: str
    filename: str
    size: int
    sha256: str

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.label}/{self.filename}"


def read_manifest(path: Path | None = None) -> list[ManifestEntry]:
    """Read the committed manifest: one row per image, sorted by split, class and name."""
    with open(path or MANIFEST_PATH, newline="") as f:
        return [
            ManifestEntry(r["split"], r["label"], r["filename"], int(r["size"]), r["sha256"])
            for r in csv.DictReader(f)
        ]


def manifest_digest(path: Path | None = None) -> str:
    """A short fingerprint of the manifest; caches remember which manifest built them."""
    return hashlib.sha256(Path(path or MANIFEST_PATH).read_bytes()).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(root: Path, path: Path | None = None) -> int:
    """(Maintainers) Write the manifest of a dataset folder. Returns the number of rows."""
    path = path or MANIFEST_PATH
    rows = []
    for split in SPLITS:
        for label in CLASSES:
            for file in sorted((root / split / label).iterdir()):
                if file.is_file():
                    rows.append((split, label, file.name, file.stat().st_size, sha256_of(file)))
    atomic_write_csv(path, ["split", "label", "filename", "size", "sha256"], rows)
    return len(rows)


def _dataset_problems(root: Path, checksums: bool) -> list[str]:
    """Every way ``root`` differs from the manifest; a missing class folder counts once."""
    entries = read_manifest()
    per_folder = Counter((e.split, e.label) for e in entries)
    problems = [f"missing folder: {split}/{label}/ ({n} files)"
                for (split, label), n in per_folder.items() if not (root / split / label).is_dir()]
    for entry in entries:
        file = root / entry.relpath
        if not (root / entry.split / entry.label).is_dir():
            continue  # already reported as a folder
        if not file.is_file():
            problems.append(f"missing: {entry.relpath}")
        elif file.stat().st_size != entry.size:
            problems.append(f"wrong size: {entry.relpath} ({file.stat().st_size} bytes, expected {entry.size})")
        elif checksums and sha256_of(file) != entry.sha256:
            problems.append(f"wrong checksum: {entry.relpath}")
    return problems


def _is_env_folder(root: Path) -> bool:
    env = os.environ.get(DATA_ENV)
    return bool(env) and Path(env).expanduser().resolve() == Path(root).resolve()


def repair_advice(root: Path) -> str:
    """How to repair the copy at ``root``: it depends on whether ``$BRAIN_MRI_DIR`` names it
    (a download refreshes ``data/``, which the course does not read while the variable is set)."""
    if _is_env_folder(root):
        return (f"This is the copy ${DATA_ENV} points at, so a download (which refreshes "
                f"{data_home() / 'brain-tumor-mri'}) would not be used. Either repair the files above "
                f"in {root} (copy them from a complete copy), or unset {DATA_ENV} to use the "
                f"project's own copy:  unset {DATA_ENV}; python -m course_utils.data download")
    return (f"Repair it by downloading a fresh copy:  python -m course_utils.data download --force\n"
            f"or point {DATA_ENV} at a complete copy.")


def verify_dataset(root: Path, checksums: bool = True) -> None:
    """Check that ``root`` holds every manifest file with the right size (and checksum).

    Files that are not in the manifest (a README, say) are ignored. Raises
    ``DatasetIncompleteError`` naming the first problems and how to repair the copy.
    """
    root = Path(root)
    problems = _dataset_problems(root, checksums)
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DatasetIncompleteError(
            f"The dataset at {root} does not match the course's manifest "
            f"({len(problems)} problem(s)):\n  {shown}{more}\n{repair_advice(root)}"
        )


# --------------------------------------------------------------------------------------
# Finding (and, if asked, downloading) the dataset
# --------------------------------------------------------------------------------------


def _looks_like_dataset(folder: Path) -> bool:
    return all((folder / split).is_dir() for split in SPLITS)


def _env_folder_error(folder: Path) -> DataDirError:
    local = data_home() / "brain-tumor-mri"
    if not folder.exists():
        what = "there is no such folder"
    else:
        inside = sorted(p.parent for p in folder.glob("*/Training") if _looks_like_dataset(p.parent))
        what = (f"it holds no Training/ and Testing/ folders"
                + (f"; {inside[0]} does: point {DATA_ENV} there" if inside else ""))
    return DataDirError(
        f"{DATA_ENV} is set to {folder}, but {what}.\n"
        f"Fix the path ({DATA_ENV} must name the folder that holds Training/ and Testing/), "
        f"or unset {DATA_ENV} to use the project's copy in {local}:\n"
        f"  unset {DATA_ENV}\n  python -m course_utils.data download   # if {local} is not there yet")


def locate_dataset() -> Path:
    """Return the dataset folder: ``$BRAIN_MRI_DIR`` if set, else ``data/brain-tumor-mri``.

    A ``$BRAIN_MRI_DIR`` that names no dataset folder is an error (``DataDirError``), not
    a reason to look elsewhere: the learner asked for that folder. Raises
    ``DatasetNotFoundError`` with the exact commands that fix it. Never downloads.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        folder = Path(env).expanduser()
        if _looks_like_dataset(folder):
            return folder
        raise _env_folder_error(folder)
    local = data_home() / "brain-tumor-mri"
    if _looks_like_dataset(local):
        return local
    raise DatasetNotFoundError(
        "The Brain Tumor MRI dataset was not found.\nLooked in:\n"
        f"  - ${DATA_ENV} (not set)\n  - {local} (not there)\n" + HOW_TO_GET_IT
    )


@dataclass(frozen=True)
class DownloadLimits:
    """How long a download may take, in seconds.

    ``connect``: to open a connection; ``read``: of silence while reading (a captive portal
    or a stalled proxy that accepts and never answers); ``total``: for the whole download,
    every source together.
    """

    connect: float = 15.0
    read: float = 60.0
    total: float = 3600.0
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.total - (time.monotonic() - self.started)

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            raise TimeoutError(f"its time limit of {self.total:.0f} s passed ({what})")

    def share(self, sources_left: int) -> "DownloadLimits":
        """The limits of the next source: an equal share of the time that is left, so that a
        source that hangs still leaves time for the others."""
        return DownloadLimits(self.connect, self.read, max(self.remaining(), 0) / max(sources_left, 1))


def _sweep_stale_downloads(parent: Path) -> None:
    """Remove ``.download-<pid>-*`` folders of downloads that no longer run (killed ones)."""
    for folder in parent.glob(".download-*"):
        pid = folder.name.split("-")[1] if folder.name.count("-") >= 2 else ""
        if not pid.isdigit() or not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _env_note(dest: Path) -> str:
    """A reminder, when ``$BRAIN_MRI_DIR`` names another folder, that the lessons read that one."""
    env = os.environ.get(DATA_ENV)
    if not env or _is_env_folder(dest):
        return ""
    return f"\nNote: {DATA_ENV} is set, so the lessons read {env}, not this copy (unset {DATA_ENV} to use it)."


def download_dataset(dest: Path | None = None, force: bool = False, *, connect_timeout: float = 15.0,
                     read_timeout: float = 60.0, deadline: float = 3600.0) -> Path:
    """Download the dataset into ``data/brain-tumor-mri`` and verify it.

    Tries each source in turn (``SOURCES``: kagglehub, needing no Kaggle login for this
    public dataset, then the public GitHub mirror). A source that cannot connect within
    ``connect_timeout`` s, goes quiet for ``read_timeout`` s or runs past its share of the
    overall ``deadline`` (an equal share of the time left) gives way to the next. The copy
    is assembled in a temporary folder ``.download-<pid>-*`` beside ``dest``, which is
    removed whatever happens (and, if a killed download left one, by the next download),
    and moved into place only once it matches the manifest. An interrupted download
    restarts from the beginning.
    """
    dest = Path(dest) if dest else data_home() / "brain-tumor-mri"
    if _looks_like_dataset(dest) and not force:
        verify_dataset(dest)
        print(f"The dataset is already at {dest} and all {len(read_manifest())} files match the "
              f"manifest: nothing to download (--force downloads it again).{_env_note(dest)}")
        return dest
    limits = DownloadLimits(connect_timeout, read_timeout, deadline)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_downloads(dest.parent)
    errors, timed_out = [], False
    for i, (name, fetch) in enumerate(SOURCES):
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".download-{os.getpid()}-"))
        try:
            staging = tmp / "brain-tumor-mri"
            print(f"Downloading the dataset from {name} ...", flush=True)
            fetch(staging, limits.share(len(SOURCES) - i))
            verify_dataset(staging)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
            print(f"Dataset ready at {dest}{_env_note(dest)}")
            return dest
        except Exception as error:  # try the next source, report all at the end
            errors.append(f"{name}: {type(error).__name__}: {error}")
            timed_out = timed_out or isinstance(error, TimeoutError)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    slow = ("If the network is slow rather than down, allow more time:\n"
            "  python -m course_utils.data download --timeout 300 --deadline 7200\n" if timed_out else "")
    raise DatasetNotFoundError(
        "Could not download the dataset:\n  " + "\n  ".join(errors) + "\n" + slow + HOW_TO_GET_IT
    )


def _copy_dataset_folders(source: Path, staging: Path) -> None:
    """Copy ``Training/`` and ``Testing/`` from wherever they sit below ``source``."""
    candidates = [source] + [p.parent for p in source.rglob("Training") if p.is_dir()]
    for folder in candidates:
        if _looks_like_dataset(folder):
            staging.mkdir(parents=True)
            for split in SPLITS:
                shutil.copytree(folder / split, staging / split)
            return
    raise FileNotFoundError(f"no Training/ and Testing/ folders below {source}")


def _fetch_from_kaggle(staging: Path, limits: DownloadLimits) -> None:
    """kagglehub's download (into its own cache), waited for until the overall deadline.

    kagglehub has its own connect and read timeouts; the deadline is enforced here by
    waiting for it in a background thread, which is abandoned if it runs too long.
    """
    import kagglehub  # imported here: importing course_utils never touches the network

    outcome: dict = {}

    def work() -> None:
        try:
            outcome["path"] = kagglehub.dataset_download(KAGGLE_HANDLE)
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error

    worker = threading.Thread(target=work, daemon=True, name="kagglehub-download")
    worker.start()
    worker.join(max(limits.remaining(), 0))
    if worker.is_alive():
        raise TimeoutError(f"kagglehub had not finished within its time limit of {limits.total:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    _copy_dataset_folders(Path(outcome["path"]), staging)


def _http_download(url: str, target: Path, limits: DownloadLimits) -> None:
    """Stream ``url`` into ``target`` with a progress bar, within ``limits``."""
    import requests  # imported here: importing course_utils never touches the network
    from tqdm.auto import tqdm

    try:
        response = requests.get(url, stream=True, timeout=(limits.connect, min(limits.read, max(limits.remaining(), 0.1))))
        response.raise_for_status()
        size = int(response.headers.get("content-length") or 0) or None
        with response, open(target, "wb") as f, tqdm(total=size, unit="B", unit_scale=True,
                                                       desc=url.rsplit("/", 1)[-1]) as bar:
            for block in response.iter_content(1 << 20):
                f.write(block)
                bar.update(len(block))
                limits.check(f"{bar.n / 1e6:.0f} MB received")
    except requests.exceptions.ConnectTimeout as error:
        raise TimeoutError(f"{url}: no connection within {limits.connect:g} s") from error
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
        if "timed out" in str(error) or isinstance(error, requests.exceptions.ReadTimeout):
            raise TimeoutError(f"{url}: the server went quiet for {limits.read:g} s") from error
        raise OSError(f"{url}: {error}") from error
    except requests.exceptions.RequestException as error:
        raise OSError(f"{url}: {error}") from error


def _fetch_from_github(staging: Path, limits: DownloadLimits) -> None:
    errors = []
    archive = staging.parent / "mirror.zip"
    for branch in ("main", "master"):
        url = f"{GITHUB_MIRROR}/archive/refs/heads/{branch}.zip"
        try:
            _http_download(url, archive, limits)
            break
        except TimeoutError:
            raise  # a silent server will not answer the next branch either
        except OSError as error:
            errors.append(str(error))
    else:
        raise OSError("; ".join(errors))
    unpacked = staging.parent / "unpacked"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    archive.unlink()
    _copy_dataset_folders(unpacked, staging)


#: Where ``download_dataset`` looks, in order: ``(name, fetch(staging, limits))``.
SOURCES = (("kagglehub", _fetch_from_kaggle), ("GitHub mirror", _fetch_from_github))


def get_dataset(download: bool = True) -> Path:
    """Find the dataset, downloading it when it is nowhere on disk and ``download`` is True."""
    try:
        return locate_dataset()
    except DataDirError:
        raise  # $BRAIN_MRI_DIR names a wrong folder: downloading into data/ would not help
    except DatasetNotFoundError:
        if not download:
            raise
        return download_dataset()


# --------------------------------------------------------------------------------------
# Reading one image, whatever its format, mode or size
# --------------------------------------------------------------------------------------


def load_image(path: str | Path) -> Image.Image:
    """Open any image file as an 8-bit grayscale (mode ``"L"``) PIL image.

    The dataset mixes JPEG and PNG (five PNGs are named ``.jpg``) and the modes RGB, L, RGBA
    and P (palette). Pillow reads the real format from the bytes, not the name. Transparent
    pixels are put on black (the MRI background); colour is averaged to luminance.
    A file that is not a readable image raises ``ImageLoadError`` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_grayscale(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"Cannot read {path} as an image: {error}") from error


def to_grayscale(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``"L"``: alpha over black, palette expanded, 16-bit scaled."""
    if img.mode == "L":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(array)
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB").convert("L")


@dataclass(frozen=True)
class FileInfo:
    """What a file's header says: real format, colour mode and size (no pixels decoded)."""

    relpath: str
    split: str
    label: str
    format: str
    mode: str
    width: int
    height: int
    bytes: int


def scan_files(root: Path | None = None) -> list[FileInfo]:
    """Read the header of every manifest file: format, mode, width, height, bytes.

    Only headers are read, so this takes about a second for the whole dataset. Lesson 00 uses
    it for the dataset's statistics; lesson 13 uses it to test whether image size alone
    predicts the class.
    """
    root = Path(root) if root else locate_dataset()
    infos = []
    for entry in read_manifest():
        path = root / entry.relpath
        try:
            with Image.open(path) as img:
                infos.append(FileInfo(entry.relpath, entry.split, entry.label, img.format or "?",
                                      img.mode, img.width, img.height, path.stat().st_size))
        except (UnidentifiedImageError, OSError) as error:
            raise ImageLoadError(f"Cannot read {path} as an image: {error}") from error
    return infos


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """Pad the image to a square with black (keeping it centred), then resize to ``size``.

    Padding, unlike stretching, keeps the anatomy's proportions; unlike cropping, it never
    cuts off part of the brain.
    """
    width, height = img.size
    side = max(width, height)
    if side * side > MAX_SQUARE_PIXELS:
        raise ImageLoadError(
            f"A {width} × {height} px image would become {side} × {side} px "
            f"({side * side / 1e6:.0f} megapixels) once padded to a square; the course refuses more "
            f"than {MAX_SQUARE_PIXELS / 1e6:.0f}. Crop or resize it first.")
    if width != height:
        canvas = Image.new("L", (side, side), 0)
        canvas.paste(img, ((side - width) // 2, (side - height) // 2))
        img = canvas
    return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)


def _decode_for_cache(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    return np.asarray(square_resize(load_image(path), size), dtype=np.uint8)


# --------------------------------------------------------------------------------------
# Decoded, cached image sets
# --------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """A set of images in memory: ``images`` is ``uint8 (N, H, W)``, ``labels`` ``int64 (N,)``.

    ``files`` holds each image's path relative to the dataset folder, e.g.
    ``"Training/glioma/Tr-gl_0010.jpg"``, so every prediction can be traced to its file.
    """

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str]
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "ImageSet":
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], [self.files[i] for i in index.tolist()], self.classes)

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def sample_per_class(self, n: int, seed: int = 0) -> "ImageSet":
        """A stratified random subset with at most ``n`` images of each class."""
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        chosen = []
        for k in range(len(self.classes)):
            members = np.flatnonzero(labels == k)
            chosen.extend(rng.permutation(members)[:n].tolist())
        return self.subset(sorted(chosen))

    def float_images(self) -> torch.Tensor:
        """Images as ``float32 (N, 1, H, W)`` in ``[0, 1]``."""
        return self.images.unsqueeze(1).float().div_(255)


def cache_path(size: int) -> Path:
    return cache_dir() / f"brain-mri-{size}px-v{CACHE_VERSION}.pt"


def build_cache(size: int, root: Path | None = None, workers: int | None = None) -> Path:
    """Decode every image of both splits once at ``size`` px and save one tensor file.

    The file is written atomically (``course_utils.files.atomic_write``): an interrupted run
    or a full disk never leaves a broken or half-written cache behind.
    """
    from tqdm.auto import tqdm

    root = Path(root) if root else get_dataset()
    verify_dataset(root)
    entries = read_manifest()
    paths = [str(root / e.relpath) for e in entries]
    workers = workers or min(4, os.cpu_count() or 1)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        arrays = list(
            tqdm(
                pool.map(_decode_for_cache, [(p, size) for p in paths], chunksize=64),
                total=len(paths),
                desc=f"decoding {len(paths)} images at {size}px",
            )
        )
    payload = {
        "images": torch.from_numpy(np.stack(arrays)),
        "labels": torch.tensor([CLASSES.index(e.label) for e in entries], dtype=torch.long),
        "files": [e.relpath for e in entries],
        "manifest": manifest_digest(),
        "version": CACHE_VERSION,
    }
    target = atomic_torch_save(payload, cache_path(size))
    print(f"Decoded {len(paths)} images at {size}px in {time.perf_counter() - start:.1f} s -> {target}")
    return target


_memory: dict[tuple[str, float], dict] = {}  # caches already read by this process
CACHE_KEYS = ("images", "labels", "files", "manifest", "version")


def _read_cache(size: int) -> dict | None:
    path = cache_path(size)
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    if key in _memory:
        return _memory[key]
    try:
        payload = read_or_explain(path, torch_load, made_by="build_cache", fix="",
                                  check=dict_with(*CACHE_KEYS))
    except UnreadableFileError as error:  # a cache is disposable: rebuild it
        print(f"Rebuilding the image cache {path.name}: {error.reason}.")
        return None
    if payload.get("manifest") != manifest_digest() or payload.get("version") != CACHE_VERSION:
        return None
    _memory.clear()  # keep one resolution in memory at a time
    _memory[key] = payload
    return payload


def load_images(split: str, size: int) -> ImageSet:
    """All images of ``split`` (``"Training"`` or ``"Testing"``) at ``size`` × ``size`` px.

    The first call decodes the whole dataset (a few seconds per resolution) and caches it;
    later calls read the cache.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    payload = _read_cache(size)
    if payload is None:
        build_cache(size)
        payload = _read_cache(size)
    prefix = split + "/"
    index = [i for i, f in enumerate(payload["files"]) if f.startswith(prefix)]
    lo, hi = index[0], index[-1] + 1  # the manifest is sorted by split, so this is one slice
    return ImageSet(payload["images"][lo:hi], payload["labels"][lo:hi], payload["files"][lo:hi])


def stratified_split(labels, val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/validation split that keeps each class's share in both parts."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(members) * val_fraction))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return np.array(sorted(train)), np.array(sorted(val))


def load_splits(size: int, val_fraction: float = 0.15, seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``(train, val, test)``: ``Training/`` split stratified into train and validation.

    The official ``Testing/`` folder is returned untouched; use it only for the final score,
    never to choose a model or a hyper-parameter.
    """
    training = load_images("Training", size)
    train_idx, val_idx = stratified_split(training.labels.numpy(), val_fraction, seed)
    return training.subset(train_idx), training.subset(val_idx), load_images("Testing", size)


def read_grouped_split(path: Path | None = None) -> list[dict[str, str]]:
    """The rows of ``grouped_split.csv``: ``relpath, label, split, slice_group, scan_group``.

    ``split`` is ``train``, ``val``, ``test`` or ``excluded`` (a slice filed under two
    labels). The file is made by ``course_utils.grouping``; see its docstring for how the
    groups are found and what they cannot guarantee.
    """
    path = Path(path or GROUPED_SPLIT_PATH)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. Recreate it with:  python -m course_utils.grouping write-split")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_grouped_split(size: int, path: Path | None = None) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``(train, val, test)`` of the grouped split at ``size`` px, from both dataset folders.

    All 7023 images are pooled and split so that no same-slice or same-scan group crosses a
    boundary (``course_utils.grouping``); unlike the official split, the test set holds no
    copy of a training image. ``grouped_split_groups(test.files)`` gives each image's group.
    """
    rows = read_grouped_split(path)
    pooled = [load_images(split, size) for split in SPLITS]
    files = [f for s in pooled for f in s.files]
    position = {f: i for i, f in enumerate(files)}
    missing = [r["relpath"] for r in rows if r["relpath"] not in position]
    if missing:
        raise ValueError(f"{len(missing)} files of {path or GROUPED_SPLIT_PATH} are not in the dataset, "
                         f"e.g. {missing[0]}; recreate it with  python -m course_utils.grouping write-split")
    everything = ImageSet(torch.cat([s.images for s in pooled]), torch.cat([s.labels for s in pooled]), files)
    return tuple(everything.subset([position[r["relpath"]] for r in rows if r["split"] == name])
                 for name in ("train", "val", "test"))


def grouped_split_groups(files: list[str], level: str = "slice_group", path: Path | None = None) -> np.ndarray:
    """The group id (``"slice_group"`` or ``"scan_group"``) of each of ``files`` in the grouped
    split, e.g. to score a test set counting each same-slice group once
    (``course_utils.metrics.group_accuracy``)."""
    group_of = {r["relpath"]: int(r[level]) for r in read_grouped_split(path)}
    return np.array([group_of[f] for f in files])


# --------------------------------------------------------------------------------------
# PyTorch datasets and loaders
# --------------------------------------------------------------------------------------


class BatchAugmentation:
    """Light, random augmentation of a whole batch at once, with its own random numbers.

    Input and output: ``float32 (B, 1, H, W)`` in ``[0, 1]``. Each image draws its own
    parameters: a left-right flip with probability ``flip``; a zoom by a factor in
    ``[1 - scale, 1 + scale]`` and a shift of up to ``shift`` × the image size (one
    ``grid_sample`` call for the batch); brightness and contrast factors in
    ``[1 - brightness, 1 + brightness]`` and ``[1 - contrast, 1 + contrast]``.

    Working on batches rather than single images makes augmentation about as cheap as a
    copy, and the private generator makes it repeatable from ``seed``.
    """

    def __init__(self, flip: float = 0.5, brightness: float = 0.1, contrast: float = 0.1,
                 shift: float = 0.05, scale: float = 0.05, seed: int = 0):
        self.flip, self.brightness, self.contrast = flip, brightness, contrast
        self.shift, self.scale = shift, scale
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flip:
            flipped = torch.rand(n, generator=self.generator) < self.flip
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        if self.shift or self.scale:
            zoom = self._uniform(n, 1 - self.scale, 1 + self.scale)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom  # sample a smaller window = zoom in
            theta[:, :, 2] = self._uniform(2 * n, -2 * self.shift, 2 * self.shift).view(n, 2)
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            x = torch.nn.functional.grid_sample(x, grid, align_corners=False)
        if self.brightness or self.contrast:
            b = self._uniform(n, 1 - self.brightness, 1 + self.brightness)[:, None, None, None]
            c = self._uniform(n, 1 - self.contrast, 1 + self.contrast)[:, None, None, None]
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean * b) * c + mean * b).clamp_(0, 1)
        return x

    def __repr__(self) -> str:
        return (f"BatchAugmentation(flip={self.flip}, shift={self.shift}, scale={self.scale}, "
                f"brightness={self.brightness}, contrast={self.contrast})")


def train_augmentation(flip: float = 0.5, brightness: float = 0.1, contrast: float = 0.1,
                       shift: float = 0.05, scale: float = 0.05, seed: int = 0) -> BatchAugmentation:
    """The light augmentation the course uses on MRI slices.

    Left-right flips are safe for axial brain slices (the brain is roughly symmetric and
    tumours occur on both sides); small shifts and zooms mimic framing differences; brightness
    and contrast mimic scanner settings. Rotations are left out: they cost accuracy here.
    """
    return BatchAugmentation(flip, brightness, contrast, shift, scale, seed)


class MRIDataset(torch.utils.data.Dataset):
    """Serves ``(image, label)`` pairs from an ``ImageSet`` as float tensors.

    Each image becomes ``float32 (channels, H, W)``: scaled to ``[0, 1]``, augmented by
    ``transform`` (a callable on a float batch ``(B, 1, H, W)``, such as
    ``train_augmentation()``), then standardised as ``(x - mean) / std``.
    ``channels=3`` repeats the gray channel for ImageNet models.

    Indexing with a list of indices returns a whole batch ``(x (B, C, H, W), y (B,))`` in one
    step; ``make_loader`` uses this, which keeps the per-image Python overhead out of training.
    """

    def __init__(self, images: ImageSet, transform=None, channels: int = 1,
                 mean: float = 0.0, std: float = 1.0):
        self.images = images
        self.transform = transform
        self.channels = channels
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.images)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).float().div_(255)  # (B, 1, H, W) in [0, 1]
        if self.transform is not None:
            x = self.transform(x)
        x = (x - self.mean) / self.std
        return x.expand(-1, self.channels, -1, -1) if self.channels != 1 else x

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, torch.Tensor, np.ndarray)):
            index = torch.as_tensor(index, dtype=torch.long)
            return self._prepare(self.images.images[index]), self.images.labels[index]
        return self._prepare(self.images.images[index : index + 1])[0], int(self.images.labels[index])


def make_loader(dataset: MRIDataset, batch_size: int, shuffle: bool, seed: int = 0,
                drop_last: bool = False, sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` that yields whole batches and whose order depends only on ``seed``.

    The images already sit in memory, so loading happens in the main process
    (``num_workers=0``): no start-up cost, and the same order on every run. ``sampler``
    replaces the default order (e.g. a ``DistributedSampler`` that gives each process its
    own shard); ``shuffle`` and ``seed`` then belong to it.
    """
    if sampler is None:
        generator = torch.Generator().manual_seed(seed)
        sampler = (torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle
                   else torch.utils.data.SequentialSampler(dataset))
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=drop_last)
    # batch_size=None: each "index" the sampler yields is a list, and MRIDataset turns
    # the whole list into one batch.
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=batches, num_workers=0)


# --------------------------------------------------------------------------------------
# Command line: python -m course_utils.data {download,verify,cache}
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_utils.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="download and verify the dataset into data/")
    dl.add_argument("--force", action="store_true", help="download again even if a copy exists")
    dl.add_argument("--timeout", type=float, default=60.0,
                    help="seconds of silence after which a source is given up (default 60)")
    dl.add_argument("--deadline", type=float, default=3600.0,
                    help="seconds for the whole download, all sources together (default 3600)")
    sub.add_parser("verify", help="check the dataset against the manifest")
    cache = sub.add_parser("cache", help="decode the dataset into cached tensors")
    cache.add_argument("sizes", nargs="*", type=int, default=[32, 96, 160])
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download_dataset(force=args.force, read_timeout=args.timeout, deadline=args.deadline)
        elif args.command == "verify":
            root = locate_dataset()
            verify_dataset(root)
            print(f"{root}: all {len(read_manifest())} files match the manifest.")
        else:
            for size in args.sizes:
                build_cache(size)
    except (DatasetNotFoundError, DatasetIncompleteError, ImageLoadError, CourseFileError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
