"""Reading user images safely: format checks, EXIF orientation, mode conversion, pixel cap."""

from __future__ import annotations

import io
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
    applied; grayscale, CMYK, palette, 16-bit and RGBA images are converted (transparency is
    flattened onto white). Raises ImageError for non-images, truncated files, unsupported formats
    and images over ``max_pixels``.
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
        try:
            img = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError) as err:
            raise ImageError(f"{name} is not an image Pillow can read; use JPEG, PNG, WebP, "
                             "TIFF or BMP.") from err
        if img.format not in FORMATS:
            raise ImageError(f"{name} is a {img.format} file; use JPEG, PNG, WebP, TIFF or BMP.")
    _check_pixels(img.width, img.height, max_pixels)
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name} is truncated or corrupt; re-export or re-download it.") from err


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(f"The image has {width * height / 1e6:.1f} MP, over the limit of "
                         f"{max_pixels / 1e6:.0f} MP; downscale it or raise the pixel limit.")


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / scale * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))
