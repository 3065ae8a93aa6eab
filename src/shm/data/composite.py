"""Foreground colour recovery and compositing, ``I = alpha * F + (1 - alpha) * B``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from shm.fileio import atomic_write


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours without background spill (pymatting's multilevel method).

    image: (H, W, 3) uint8 or float in [0, 1]; alpha: (H, W) uint8 or float in [0, 1].
    Returns (H, W, 3) float32 in [0, 1].
    """
    from pymatting import estimate_foreground_ml

    img = _as_float(image).astype(np.float64)
    a = _as_float(alpha).astype(np.float64)
    return np.clip(estimate_foreground_ml(img, a), 0, 1).astype(np.float32)


def cached_foreground(image_path: Path, alpha_path: Path, cache_dir: Path) -> np.ndarray:
    """``estimate_foreground`` of a photo and its alpha, cached as PNG under ``cache_dir``.

    Returns (H, W, 3) uint8. The cache key hashes both files' paths, sizes and mtimes.
    """
    key = hashlib.sha1()
    for p in (image_path, alpha_path):
        st = p.stat()
        key.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = cache_dir / f"{image_path.stem}-{key.hexdigest()[:12]}.png"
    if out.is_file():
        return np.asarray(Image.open(out).convert("RGB"))
    image = np.asarray(Image.open(image_path).convert("RGB"))
    alpha = np.asarray(Image.open(alpha_path).convert("L"))
    fg = (estimate_foreground(image, alpha) * 255 + 0.5).astype(np.uint8)
    atomic_write(out, lambda tmp: Image.fromarray(fg).save(tmp, format="PNG"))
    return fg


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """alpha * fg + (1 - alpha) * bg. fg, bg: (H, W, 3) float in [0, 1]; alpha: (H, W) in [0, 1]."""
    a = alpha[..., None]
    return a * fg + (1 - a) * bg


def photo_background(photo: np.ndarray, fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The background B behind a photo I = alpha F + (1 - alpha) B, where it can be recovered.

    photo, fg: (H, W, 3) float in [0, 1]; alpha: (H, W) in [0, 1]. Where alpha > 0.98, B does
    not matter to the composite and the photo is returned. Returns (H, W, 3) float32 in [0, 1].
    """
    a = alpha[..., None]
    solid = a > 0.98
    bg = (photo - a * fg) / np.where(solid, 1.0, 1 - a)
    return np.clip(np.where(solid, photo, bg), 0, 1).astype(np.float32)


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
