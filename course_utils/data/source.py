"""The brain-tumour MRI dataset: where it comes from, and the manifest that vouches for it.

The dataset is the Kaggle *Brain Tumor MRI Dataset* (Msoud Nickparvar, 2021; CC0), which
merges three public sources (figshare, SARTAJ and Br35H). It has a ``Training/`` and a
``Testing/`` folder, each with one sub-folder per class.

Where the data comes from, in this order:

1. the folder named by the environment variable ``BRAIN_MRI_DIR``;
2. the project's own cache, ``data/brain-tumor-mri/``;
3. a download (``python -m course_utils.data download``): kagglehub first, then a public
   GitHub mirror with the same bytes.

Whatever the source, every file is checked against ``course_utils/data/manifest.csv`` (name,
class, split, size and SHA-256) before it is used. Decoding and caching are in
``course_utils.data.images`` and ``course_utils.data.cache``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from ..files import atomic_write_csv, pid_alive, project_root


CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
SPLITS: tuple[str, ...] = ("Training", "Testing")
DATA_ENV = "BRAIN_MRI_DIR"
KAGGLE_HANDLE = "masoudnickparvar/brain-tumor-mri-dataset"
GITHUB_MIRROR = "https://github.com/ricardotran92/Brain-Tumor-MRI-Dataset"
MANIFEST_PATH = Path(__file__).with_name("manifest.csv")

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
        what = ("it holds no Training/ and Testing/ folders"
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
    from tqdm.auto import tqdm  # here: only when a bar is shown

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


_memory: dict[tuple[str, float], dict] = {}  # caches already read by this process


def data_home() -> Path:
    """Folder for the downloaded dataset and the decoded caches (``data/`` by default)."""
    return Path(os.environ.get("COURSE_DATA_HOME", project_root() / "data"))


def cache_dir() -> Path:
    return data_home() / "cache"
