"""Reading user images safely: format checks, EXIF orientation, mode conversion, pixel cap."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "MPO")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})


class ImageError(ValueError):
    """A user image that cannot be used; the message is one sentence saying what to do."""


def load_image(source: str | Path | bytes | Image.Image | np.ndarray,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load a photo as an (H, W, 3) uint8 RGB array.

    source: a path, encoded bytes, a PIL image or an (H, W, 3) uint8 array. EXIF orientation is
    applied; grayscale, CMYK, palette, 16-bit, 32-bit, float and RGBA images are converted
    (integers and floats by the range of their type: 0..65535 for 16-bit, 0..1 for float;
    transparency is flattened onto white). Raises ImageError, and nothing else, for non-images,
    truncated or corrupt files, unsupported formats, empty files and images, images over
    ``max_pixels`` and headers claiming more than Pillow's decompression-bomb limit (about
    179 MP).
    """
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ImageError(f"Expected an HxWx3 uint8 array, got shape {source.shape} and "
                             f"dtype {source.dtype}.")
        _check_pixels(source.shape[1], source.shape[0], max_pixels)
        return source
    name = "The file"
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (str, Path)):
            name = str(source)
            if not Path(source).is_file():
                raise ImageError(f"{name} does not exist or is not a file.")
            data = Path(source).read_bytes()
        else:
            data = bytes(source)
        if not data:
            raise ImageError(f"{name} is empty (0 bytes); re-export or re-download it.")
        img = _open(data, name)
        if img.format not in FORMATS:
            raise ImageError(f"{name} is a {img.format} file; use JPEG, PNG, WebP, TIFF or BMP.")
    _check_pixels(img.width, img.height, max_pixels)
    try:
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img), _white(img))  # the copy has no TIFF tags
    except MemoryError:
        raise
    except Exception as err:  # see _open: hostile files raise many types
        raise ImageError(f"{name} is truncated or corrupt; re-export or re-download it.") from err


def _open(data: bytes, name: str) -> Image.Image:
    """Read the header only. Pillow's parsers raise many exception types on damaged or hostile
    files (OSError, ValueError for an oversized iCCP or zTXt chunk or a truncated IHDR,
    SyntaxError, struct.error, IndexError, ...); every one of them means the file is unusable.

    Pillow's DecompressionBombWarning (over about 89 MP) is silenced: such an image is either
    refused politely by the pixel limit or decoded, never worth a raw warning. (Threads that
    interleave ``catch_warnings`` can leave that one filter installed, which is harmless.)"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name} claims more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP, "
                         "which looks like a decompression bomb; downscale it if it is a real "
                         "photo.") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{name} is not an image in a supported format; use JPEG, PNG, WebP, "
                         "TIFF or BMP.") from err
    except MemoryError:
        raise
    except Exception as err:
        raise ImageError(f"{name} is truncated or corrupt; re-export or re-download it.") from err


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"The image is {width}x{height} pixels, which is empty; give a photo "
                         "at least 1 pixel wide and high.")
    if width * height > max_pixels:
        raise ImageError(f"The image has {width * height / 1e6:.1f} MP, over the limit of "
                         f"{max_pixels / 1e6:.0f} MP; downscale it or raise the pixel limit.")


def _to_rgb(img: Image.Image, white_level: float) -> np.ndarray:
    if img.mode.startswith("I") or img.mode == "F":
        grey = np.asarray(img, dtype=np.float64) / white_level
        grey = (np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _white(img: Image.Image) -> float:
    """The value that means white, by the range of the image's type, not its content: 1.0 for
    float, 65535 for 16-bit, 2**31 - 1 for signed 32-bit, 255 for the 8-bit modes."""
    if img.mode == "F":
        return 1.0
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode != "I":
        return 255.0
    tags = getattr(img, "tag_v2", {})  # mode I: TIFF gives bits and signedness, PNG is 16-bit
    bits, signed = tags.get(258, (16,))[0], tags.get(339, (1,))[0] == 2
    return 2.0 ** (bits - signed) - 1
