"""Reading one image, whatever its format, mode or size: grayscale, square, resized.

The one decoder of the course: the training cache (``course_utils.data.cache``) and the
app's uploads (``course_utils.app.upload``) both go through ``load_image`` /
``decode_image``, so an image is prepared the same way wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .source import locate_dataset, read_manifest


# square_resize pads to a square before resizing; this caps the square it may allocate
# (the dataset's largest, 1920 × 1920, is 3.7 megapixels).
MAX_SQUARE_PIXELS = 100_000_000


class ImageLoadError(ValueError):
    """A file could not be read as an image; the message names the file."""


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
        return decode_grayscale(path)
    except DECODE_ERRORS as error:
        raise ImageLoadError(f"Cannot read {path} as an image: {error}") from error


#: What Pillow raises for a file that is not an image it can read, or a damaged one.
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError,
                 EOFError, MemoryError)


def decode_grayscale(source: str | Path | IO[bytes], check_size: Callable[[tuple[int, int]], None] | None = None
                     ) -> Image.Image:
    """The one decoder of the course: an image file (a path or a binary file object) as an
    8-bit grayscale PIL image, rotated as its EXIF data says.

    ``check_size(size)`` is called with the size read from the header, *before* any pixel
    is decoded (the app refuses huge images that way). Pillow's errors (``DECODE_ERRORS``)
    are left to the caller, which knows what to tell the learner.
    """
    with Image.open(source) as img:
        if check_size is not None:
            check_size(img.size)
        img.load()
        return to_grayscale(ImageOps.exif_transpose(img))


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


def model_pixels(image: Image.Image, size: int) -> np.ndarray:
    """``image`` as a model of the course sees it before normalisation: ``uint8 (size, size)``,
    grayscale, padded to a square and resized exactly as the training cache was made."""
    return np.array(square_resize(to_grayscale(image), size), dtype=np.uint8)


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
