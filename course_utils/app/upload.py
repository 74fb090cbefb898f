"""Uploads: the bytes of a file a learner gives the app, checked and decoded.

The pixel count is read from the file's header and checked *before* the pixels are
decoded, so a small file that claims to be a 20000 × 20000 image (a "decompression bomb")
is refused without filling the memory.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

from PIL import Image, UnidentifiedImageError

from ..data.images import DECODE_ERRORS, ImageLoadError, decode_grayscale


# Limits on uploads. The dataset's largest slice is 1920 × 1080 (about 2 megapixels) and
# most are 512 × 512 (0.26 megapixels); 40 megapixels leaves a wide margin for real scans
# and photos while refusing files that would need gigabytes once decoded.
MAX_PIXELS = 40_000_000
MAX_BYTES = 30 * 1024 * 1024
MIN_SIDE = 32
# The app pads every image to a square before resizing it (as the training cache did), so a
# long thin strip would become a huge square: 50000 × 32 px is 1.6 megapixels but pads to
# 2500. MRI slices are close to square (the dataset's widest is 16:9); 10:1 leaves room.
MAX_ASPECT = 10.0


class UploadError(ImageLoadError):
    """An uploaded file the app cannot use; the message says why and what to do."""


# ------------------------------------------------------------------------------------------
# From uploaded bytes to a grayscale image
# ------------------------------------------------------------------------------------------


def decode_upload(payload: bytes | memoryview, name: str = "the file", max_pixels: int = MAX_PIXELS,
                  max_bytes: int = MAX_BYTES, min_side: int = MIN_SIDE) -> Image.Image:
    """Decode an uploaded file into an 8-bit grayscale (mode ``"L"``) PIL image.

    Handles what ``course_utils.data.load_image`` handles (JPEG or PNG whatever the name
    says, RGB, RGBA over black, palette, 16-bit, EXIF rotation) and refuses, with an
    ``UploadError`` naming the file:

    * an empty file, or one larger than ``max_bytes``;
    * a file that is not an image Pillow can read (a text file, a PDF...);
    * an image with more than ``max_pixels`` pixels, checked from the header *before*
      decoding (Pillow reads the size without touching the pixel data);
    * an image smaller than ``min_side`` px on a side (nothing left to classify);
    * a long thin strip (more than ``MAX_ASPECT`` : 1), whose padding to a square would
      need a huge image (``check_dimensions``);
    * an image whose data is damaged or cut short.
    """
    payload = bytes(payload)
    if not payload:
        raise UploadError(f"{name} is empty (0 bytes). Choose an image file (JPEG or PNG).")
    if len(payload) > max_bytes:
        raise UploadError(f"{name} is {len(payload) / 2**20:.0f} MB; the app accepts files up to "
                          f"{max_bytes / 2**20:.0f} MB.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 megapixels; the check of the header's size refuses those anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return decode_grayscale(io.BytesIO(payload),
                                    check_size=lambda size: check_dimensions(size, name, max_pixels, min_side))
    except UploadError:
        raise
    except Image.DecompressionBombError as error:
        raise UploadError(f"{name} has far more than {max_pixels / 1e6:.0f} megapixels ({error}); the app "
                          f"refuses it before decoding. Resize it and try again.") from error
    except UnidentifiedImageError as error:
        raise UploadError(f"{name} is not an image the app can read. Upload a JPEG or PNG "
                          f"(BMP, TIFF and GIF work too).") from error
    except DECODE_ERRORS as error:
        raise UploadError(f"{name} looks like an image but could not be decoded ({error}). "
                          f"Is the file complete?") from error


def check_dimensions(size: tuple[int, int], name: str = "the file", max_pixels: int = MAX_PIXELS,
                     min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT) -> None:
    """Refuse, with an ``UploadError``, any size whose decoding or padding would be too large.

    Checked from the header, before anything is allocated: the pixels themselves
    (``width × height``), the shape (a strip longer than ``max_aspect`` : 1), and the square
    that ``square_resize`` pads the image to (``side × side``, ``side = max(width, height)``).
    """
    width, height = size
    if width * height > max_pixels:
        raise UploadError(
            f"{name} is {width} × {height} px ({width * height / 1e6:.0f} megapixels); the app "
            f"refuses images over {max_pixels / 1e6:.0f} megapixels before decoding them "
            f"(an MRI slice has well under 1). Resize it and try again.")
    if min(width, height) < min_side:
        raise UploadError(f"{name} is only {width} × {height} px; the app needs at least "
                          f"{min_side} px on each side.")
    side = max(width, height)
    if side / min(width, height) > max_aspect or side * side > max_pixels:
        raise UploadError(
            f"{name} is {width} × {height} px, a strip {side / min(width, height):.0f} times longer than it "
            f"is wide. The app pads images to a square before resizing them, which would make it "
            f"{side} × {side} px ({side * side / 1e6:.0f} megapixels); it accepts shapes up to "
            f"{max_aspect:g}:1 and squares up to {max_pixels / 1e6:.0f} megapixels. "
            f"Crop the image to the slice and try again.")


def decompression_bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG of ``width × height`` black pixels: small as a file, huge once decoded.

    20000 × 20000 is 400 megapixels, 400 MB as 8-bit gray, stored in about 0.4 MB because
    rows of zeros compress about 1000:1: the shape of a *decompression bomb*. For the lesson's
    demonstration and the tests; nothing else should need it.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(6)
    row = bytes(width + 1)  # a filter byte (0: none) and width black pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
