"""Tests for course_utils.data: finding, verifying, decoding and caching the dataset.

Most tests build a tiny synthetic dataset (with its own manifest) holding every odd case the
real dataset has: a PNG named .jpg, RGBA, palette, grayscale, RGB and a wide 1920×1080
image. Tests marked ``real_data`` use the real dataset when ``BRAIN_MRI_DIR`` points at it.
"""

from __future__ import annotations

import errno
import http.server
import io
import os
import re
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import data
from course_utils.data import cli, source
from course_utils.lessons import LESSON_DIR, read_lesson

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Training").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)


def _brain(size: tuple[int, int], seed: int) -> np.ndarray:
    """A bright disc on black, roughly like an axial slice, with some texture."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = min(w, h) * 0.4
    disc = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) < r * r
    rng = np.random.default_rng(seed)
    return (disc * (120 + rng.integers(0, 100, (h, w)))).astype(np.uint8)


def _write(path: Path, kind: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    gray = _brain((64, 48) if kind != "wide" else (1920, 1080), seed)
    if kind == "L":
        Image.fromarray(gray, "L").save(path, "JPEG")
    elif kind in ("RGB", "wide"):
        Image.fromarray(np.stack([gray] * 3, -1), "RGB").save(path, "JPEG")
    elif kind == "png-named-jpg":
        Image.fromarray(gray, "L").save(path, "PNG")
    elif kind == "RGBA":
        alpha = np.full_like(gray, 255)
        alpha[:, :8] = 0  # a transparent strip must come out black
        Image.fromarray(np.stack([gray, gray, gray, alpha], -1), "RGBA").save(path, "PNG")
    elif kind == "P":
        Image.fromarray(np.stack([gray] * 3, -1), "RGB").quantize(64).save(path, "PNG")
    else:
        raise ValueError(kind)


KINDS = ["L", "RGB", "png-named-jpg", "RGBA", "P", "wide"]


@pytest.fixture
def fake_dataset(tmp_path, monkeypatch):
    """A complete tiny dataset, its manifest, and a private data home for caches."""
    root = tmp_path / "brain-tumor-mri"
    seed = 0
    for split in data.SPLITS:
        for label in data.CLASSES:
            for i, kind in enumerate(KINDS if split == "Training" else KINDS[:2]):
                seed += 1
                _write(root / split / label / f"{split[:2]}-{label[:2]}_{i:04d}.jpg", kind, seed)
    manifest = tmp_path / "manifest.csv"
    data.write_manifest(root, manifest)
    monkeypatch.setattr(source, "MANIFEST_PATH", manifest)
    monkeypatch.setenv(data.DATA_ENV, str(root))
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path / "home"))
    source._memory.clear()
    return root


# ---------------------------------------------------------------- finding the data


def test_missing_dataset_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.get_dataset(download=False)
    message = str(info.value)
    assert "python -m course_utils.data download" in message
    assert data.DATA_ENV in message and str(tmp_path / "brain-tumor-mri") in message


def test_env_variable_pointing_nowhere_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nope"))
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="nope"):
        data.locate_dataset()


def test_project_cache_is_found_when_env_unset(fake_dataset, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    fake_dataset.rename(home / "brain-tumor-mri")
    monkeypatch.delenv(data.DATA_ENV)
    assert data.locate_dataset() == home / "brain-tumor-mri"


def test_env_variable_wins(fake_dataset):
    assert data.locate_dataset() == fake_dataset


# ---------------------------------------------------------------- verification


def test_complete_dataset_verifies(fake_dataset):
    data.verify_dataset(fake_dataset)


def test_removed_file_is_named(fake_dataset, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV)  # a copy in data/: a fresh download repairs it
    victim = next((fake_dataset / "Testing" / "glioma").iterdir())
    victim.unlink()
    with pytest.raises(data.DatasetIncompleteError) as info:
        data.verify_dataset(fake_dataset)
    assert f"missing: Testing/glioma/{victim.name}" in str(info.value)
    assert "download --force" in str(info.value)


def test_corrupted_file_is_named(fake_dataset):
    victim = next((fake_dataset / "Training" / "pituitary").iterdir())
    payload = bytearray(victim.read_bytes())
    payload[len(payload) // 2] ^= 0xFF  # same size, different bytes
    victim.write_bytes(bytes(payload))
    with pytest.raises(data.DatasetIncompleteError, match=f"wrong checksum: Training/pituitary/{victim.name}"):
        data.verify_dataset(fake_dataset)


def test_truncated_file_is_named(fake_dataset):
    victim = next((fake_dataset / "Training" / "meningioma").iterdir())
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(data.DatasetIncompleteError, match="wrong size"):
        data.verify_dataset(fake_dataset)


def test_extra_files_are_ignored(fake_dataset):
    (fake_dataset / "README.md").write_text("notes")
    data.verify_dataset(fake_dataset)


# ---------------------------------------------------------------- reading odd images


@pytest.mark.parametrize("kind", KINDS)
def test_every_mode_loads_as_grayscale(tmp_path, kind):
    path = tmp_path / "img.jpg"
    _write(path, kind, seed=3)
    img = data.load_image(path)
    assert img.mode == "L"
    assert img.size == ((1920, 1080) if kind == "wide" else (64, 48))
    array = np.asarray(img)
    assert array.max() > 100 and array[0, 0] < 10  # bright brain, black background


def test_transparent_pixels_become_black(tmp_path):
    path = tmp_path / "rgba.png"
    _write(path, "RGBA", seed=4)
    assert np.asarray(data.load_image(path))[:, :8].max() == 0


def test_not_an_image_is_named(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(data.ImageLoadError, match="notes.jpg"):
        data.load_image(path)


def test_truncated_image_is_named(tmp_path):
    path = tmp_path / "cut.jpg"
    _write(path, "L", seed=5)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.ImageLoadError, match="cut.jpg"):
        data.load_image(path)


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(data.ImageLoadError, match="empty.jpg"):
        data.load_image(path)


def test_square_resize_pads_without_stretching():
    wide = Image.fromarray(np.full((50, 100), 200, np.uint8), "L")
    out = np.asarray(data.square_resize(wide, 20))
    assert out.shape == (20, 20)
    assert out[0].max() == 0 and out[-1].max() == 0  # black bands above and below
    assert out[10].min() == 200  # the middle row is all image


# ---------------------------------------------------------------- cache and splits


def test_cache_roundtrip(fake_dataset):
    train = data.load_images("Training", 16)
    test = data.load_images("Testing", 16)
    assert train.images.shape == (4 * len(KINDS), 16, 16) and train.images.dtype == torch.uint8
    assert len(test) == 4 * 2
    assert train.class_counts() == {c: len(KINDS) for c in data.CLASSES}
    assert all(f.startswith("Training/") for f in train.files)
    assert data.cache_path(16).is_file()
    # the second load reads the cache and gives identical tensors
    source._memory.clear()
    again = data.load_images("Training", 16)
    assert torch.equal(again.images, train.images) and again.files == train.files


def test_cache_is_rebuilt_when_manifest_changes(fake_dataset, tmp_path, monkeypatch):
    data.load_images("Training", 16)
    first_mtime = data.cache_path(16).stat().st_mtime_ns
    manifest = tmp_path / "manifest2.csv"
    manifest.write_text(source.MANIFEST_PATH.read_text() + "\n")
    monkeypatch.setattr(source, "MANIFEST_PATH", manifest)
    source._memory.clear()
    data.load_images("Training", 16)
    assert data.cache_path(16).stat().st_mtime_ns != first_mtime


def test_cache_build_fails_cleanly_on_a_corrupt_image(fake_dataset, tmp_path):
    # A file that matches the manifest but cannot be decoded: re-write the manifest after
    # corrupting, so only decoding can catch it.
    victim = next((fake_dataset / "Training" / "glioma").iterdir())
    victim.write_bytes(b"GIF89a not really")
    data.write_manifest(fake_dataset, source.MANIFEST_PATH)
    with pytest.raises(data.ImageLoadError, match=victim.name):
        data.load_images("Training", 16)
    leftovers = list(data.cache_dir().glob("*")) if data.cache_dir().exists() else []
    assert leftovers == []  # nothing half-written


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    train, val = data.stratified_split(labels, 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1000
    assert np.bincount(labels[val]).tolist() == [20, 40, 60, 80]
    again, _ = data.stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(train, again)
    other, _ = data.stratified_split(labels, 0.2, seed=2)
    assert not np.array_equal(train, other)


def test_dataset_and_loader(fake_dataset):
    train, val, test = data.load_splits(16, "official", val_fraction=0.34)
    assert len(train) + len(val) == 4 * len(KINDS)
    assert set(train.files).isdisjoint(val.files)
    ds = data.MRIDataset(train, transform=data.train_augmentation(), channels=3, mean=0.5, std=0.25)
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    order = [yb.tolist() for _, yb in data.make_loader(ds, 4, shuffle=True, seed=7)]
    again = [yb.tolist() for _, yb in data.make_loader(ds, 4, shuffle=True, seed=7)]
    assert order == again


def test_split_choice(fake_dataset, monkeypatch):
    """Grouped unless asked otherwise; the environment's choice is the default; typos are refused."""
    with pytest.raises(ValueError, match="7023 files"):  # the fake dataset is not the real one
        data.load_splits(16)
    monkeypatch.setenv("COURSE_SPLIT", "official")
    assert data.load_splits(16)[2].files == data.load_images("Testing", 16).files
    with pytest.raises(ValueError, match="not a split"):
        data.load_splits(16, "random")
    monkeypatch.setenv("COURSE_SPLIT", "Grouped ")
    with pytest.raises(ValueError, match="7023 files"):
        data.load_splits(16)
    monkeypatch.setenv("COURSE_SPLIT", "officail")
    with pytest.raises(ValueError, match="COURSE_SPLIT='officail' is not a split"):
        data.load_splits(16)


def test_sample_per_class(fake_dataset):
    train = data.load_images("Training", 16)
    small = train.sample_per_class(2, seed=0)
    assert small.class_counts() == {c: 2 for c in data.CLASSES}


# ---------------------------------------------------------------- the real dataset


@real_data
def test_real_dataset_matches_manifest_sizes():
    data.verify_dataset(Path(REAL), checksums=False)
    entries = data.read_manifest()
    assert len(entries) == 7023
    counts = {}
    for e in entries:
        counts[(e.split, e.label)] = counts.get((e.split, e.label), 0) + 1
    assert counts[("Training", "notumor")] == 1595 and counts[("Testing", "notumor")] == 405


@real_data
@pytest.mark.parametrize("name", ["Tr-no_1005.jpg", "Tr-no_1011.jpg", "Tr-no_1012.jpg", "Tr-no_1019.jpg", "Tr-no_1020.jpg"])
def test_real_pngs_named_jpg_load(name):
    path = Path(REAL, "Training", "notumor", name)
    with Image.open(path) as img:
        assert img.format == "PNG"
    assert data.load_image(path).mode == "L"


def test_augmentation_is_per_image_and_repeatable():
    x = torch.rand(64, 1, 24, 24)
    out = data.train_augmentation(seed=3)(x.clone())
    again = data.train_augmentation(seed=3)(x.clone())
    assert out.shape == x.shape and torch.equal(out, again)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    only_flip = data.BatchAugmentation(flip=0.5, brightness=0, contrast=0, shift=0, scale=0, seed=1)
    y = only_flip(x.clone())
    is_flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(64)])
    unchanged = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert (is_flipped | unchanged).all() and 10 < is_flipped.sum() < 54  # each image decides


def test_identity_augmentation_changes_nothing():
    x = torch.rand(4, 1, 16, 16)
    none = data.BatchAugmentation(flip=0, brightness=0, contrast=0, shift=0, scale=0)
    assert torch.equal(none(x.clone()), x)


def test_loader_batches_equal_single_items(fake_dataset):
    train = data.load_images("Training", 16)
    ds = data.MRIDataset(train, channels=3, mean=0.5, std=0.25)
    xb, yb = next(iter(data.make_loader(ds, 5, shuffle=False)))
    assert xb.shape == (5, 3, 16, 16) and yb.tolist() == train.labels[:5].tolist()
    for i in range(5):
        assert torch.allclose(xb[i], ds[i][0])


def test_scan_files_reads_real_formats(fake_dataset):
    infos = data.scan_files()
    assert len(infos) == len(data.read_manifest())
    by_kind = {info.relpath.rsplit("_", 1)[1]: info for info in infos if info.relpath.startswith("Training/glioma")}
    assert by_kind["0002.jpg"].format == "PNG"  # the PNG named .jpg
    assert by_kind["0003.jpg"].mode == "RGBA" and by_kind["0004.jpg"].mode == "P"
    assert (by_kind["0005.jpg"].width, by_kind["0005.jpg"].height) == (1920, 1080)


# ---------------------------------------------------------------- faults a learner meets


def test_env_variable_with_a_typo_is_an_error_not_a_fallback(fake_dataset, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    fake_dataset.rename(home / "brain-tumor-mri")  # a good copy in data/ must not hide the typo
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "brain-tumour-mri"))
    with pytest.raises(data.DataDirError) as info:
        data.locate_dataset()
    message = str(info.value)
    assert "brain-tumour-mri, but there is no such folder" in message
    assert f"unset {data.DATA_ENV}" in message and str(home / "brain-tumor-mri") in message


def test_env_variable_one_level_too_high_says_where_the_data_is(fake_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(data.DataDirError, match=f"{fake_dataset} does: point {data.DATA_ENV} there"):
        data.locate_dataset()


def test_a_wrong_env_folder_never_triggers_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "typo"))
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path / "home"))
    calls = []
    monkeypatch.setattr(source, "SOURCES", (("test source", lambda staging, limits: calls.append(staging)),))
    with pytest.raises(data.DataDirError):
        data.get_dataset(download=True)
    assert calls == []


def test_repair_advice_for_a_damaged_env_copy_names_that_folder(fake_dataset):
    victim = next((fake_dataset / "Training" / "glioma").iterdir())
    victim.write_bytes(b"")
    with pytest.raises(data.DatasetIncompleteError) as info:
        data.verify_dataset(fake_dataset)
    message = str(info.value)
    assert f"This is the copy ${data.DATA_ENV} points at" in message
    assert f"unset {data.DATA_ENV}" in message and str(fake_dataset) in message
    assert "--force" not in message  # a download into data/ would not be used


def test_a_missing_class_folder_is_reported_once_as_a_folder(fake_dataset):
    shutil.rmtree(fake_dataset / "Training" / "glioma")
    with pytest.raises(data.DatasetIncompleteError) as info:
        data.verify_dataset(fake_dataset)
    message = str(info.value)
    assert f"(1 problem(s)):\n  missing folder: Training/glioma/ ({len(KINDS)} files)" in message
    assert "missing: Training/glioma/" not in message


def test_make_data_says_when_the_data_is_already_there(fake_dataset, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    fake_dataset.rename(home / "brain-tumor-mri")
    monkeypatch.delenv(data.DATA_ENV)
    monkeypatch.setattr(source, "SOURCES", ())
    assert cli.main(["download"]) == 0
    out = capsys.readouterr().out
    assert f"already at {home / 'brain-tumor-mri'}" in out and "nothing to download" in out


def test_a_cache_write_on_a_full_disk_leaves_no_partial_file(fake_dataset, monkeypatch, capsys):
    def disk_full(obj, f, *args, **kwargs):
        f.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    assert cli.main(["cache", "16"]) == 1
    err = capsys.readouterr().err
    assert f"Could not write {data.cache_path(16)}: No space left on device" in err
    assert list(data.cache_dir().iterdir()) == []


@pytest.mark.parametrize("content", [[1, 2, 3], {"images": 1}, "text"])
def test_a_cache_holding_something_else_is_rebuilt(fake_dataset, content, capsys):
    data.cache_dir().mkdir(parents=True)
    torch.save(content, data.cache_path(16))
    train = data.load_images("Training", 16)
    assert len(train) == 4 * len(KINDS)
    assert f"Rebuilding the image cache {data.cache_path(16).name}" in capsys.readouterr().out
    assert isinstance(torch.load(data.cache_path(16)), dict)


def test_a_truncated_cache_is_rebuilt(fake_dataset, capsys):
    data.load_images("Training", 16)
    path = data.cache_path(16)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    source._memory.clear()
    assert len(data.load_images("Testing", 16)) == 4 * 2
    assert "Rebuilding the image cache" in capsys.readouterr().out


def test_padding_a_long_strip_to_a_square_is_refused_before_allocating(monkeypatch):
    strip = Image.new("L", (200_000, 1))
    real_new = Image.new

    def guarded_new(mode, size, *args, **kwargs):  # 40 GB must never be asked for, even to fail
        assert size[0] * size[1] <= 10**8, f"square_resize allocated a {size[0]} × {size[1]} canvas"
        return real_new(mode, size, *args, **kwargs)

    monkeypatch.setattr(Image, "new", guarded_new)
    with pytest.raises(data.ImageLoadError, match="200000 × 200000 px"):
        data.square_resize(strip, 32)


# ---------------------------------------------------------------- downloads on a bad network


@pytest.fixture
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers (a stalled proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes the handshakes; nothing ever reads or replies
    yield f"http://127.0.0.1:{server.getsockname()[1]}/mirror"
    server.close()


@pytest.fixture
def hanging_kagglehub(monkeypatch):
    """kagglehub whose download never returns (until the test ends)."""
    import kagglehub

    release = threading.Event()
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: release.wait() and "")
    yield
    release.set()


@pytest.fixture
def zip_server(fake_dataset):
    """A local server offering the fake dataset as the mirror's zip archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(fake_dataset.rglob("*")):
            if file.is_file():
                archive.write(file, "Brain-Tumor-MRI-Dataset-main/" + str(file.relative_to(fake_dataset)))
    payload = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.endswith("/main.zip"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mirror"
    server.shutdown()
    server.server_close()


def test_a_silent_network_gives_up_on_every_source_in_bounded_time(silent_server, hanging_kagglehub,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setattr(source, "GITHUB_MIRROR", silent_server)
    dest = tmp_path / "data" / "brain-tumor-mri"
    start = time.monotonic()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.download_dataset(dest, connect_timeout=1, read_timeout=1, deadline=2)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "kagglehub: TimeoutError" in message and "GitHub mirror: TimeoutError" in message
    assert "went quiet for 1 s" in message and "download --timeout 300 --deadline 7200" in message
    assert elapsed < 8
    assert list(dest.parent.iterdir()) == []  # no .download-* folder left behind


def test_the_mirror_is_tried_when_kagglehub_hangs(zip_server, hanging_kagglehub, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(source, "GITHUB_MIRROR", zip_server)
    dest = tmp_path / "data" / "brain-tumor-mri"
    assert data.download_dataset(dest, connect_timeout=1, read_timeout=1, deadline=2) == dest
    data.verify_dataset(dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["brain-tumor-mri"]
    assert "Dataset ready" in capsys.readouterr().out


def test_a_killed_download_leaves_nothing_that_outlives_the_next_one(zip_server, tmp_path, monkeypatch):
    monkeypatch.setattr(source, "GITHUB_MIRROR", zip_server)
    monkeypatch.setattr(source, "SOURCES", (("GitHub mirror", source._fetch_from_github),))
    dest = tmp_path / "data" / "brain-tumor-mri"
    stale = dest.parent / ".download-999999999-abc" / "brain-tumor-mri"  # a download killed earlier
    stale.mkdir(parents=True)
    data.download_dataset(dest, deadline=10)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["brain-tumor-mri"]


def test_without_the_data_the_first_access_downloads_it(zip_server, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV)
    monkeypatch.setattr(source, "GITHUB_MIRROR", zip_server)
    monkeypatch.setattr(source, "SOURCES", (("GitHub mirror", source._fetch_from_github),))
    assert data.get_dataset() == tmp_path / "home" / "brain-tumor-mri"


def test_lesson_00_gets_the_data_with_get_dataset():
    """The README promises that the first lesson downloads the data when it is missing."""
    notebook = read_lesson(LESSON_DIR / "00_the_data.md")
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    first = re.search(r"data\.(get_dataset|locate_dataset|load_splits|load_images)\(", code)
    assert first and first.group(1) == "get_dataset"


def test_the_data_modules_share_one_timed_command_line(capsys):
    class Result:
        files = ["a.jpg", "b.jpg"]

    command, result = cli.timed_command("course_utils.data.audit", "Auditing.\nMore.", ["report", "write"],
                                        ["write"], Result, "audited")
    assert command == "write" and isinstance(result, Result)
    assert re.fullmatch(r"audited 2 images in \d+\.\d s\n", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        cli.timed_command("course_utils.data.audit", "Auditing.", ["report"], ["nonsense"], Result, "audited")
