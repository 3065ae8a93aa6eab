"""Training-sample augmentation: scale, crop, flip and colour jitter, on numpy arrays.

All functions take and return float32 arrays in [0, 1]: images (H, W, 3), alphas (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width) with area averaging when shrinking, bilinear otherwise."""
    h, w = size
    interp = cv2.INTER_AREA if h < x.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(x, (w, h), interpolation=interp)


def window(shape: tuple[int, int], crop: int, centre: tuple[int, int] | None,
           rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a crop x crop window in an image of ``shape`` (height, width); it may
    reach outside the image. centre: (row, col) the window is centred on (jittered by a quarter
    crop), or None for a uniformly random window."""
    h, w = shape
    if centre is None:
        top = rng.integers(min(0, h - crop), max(0, h - crop) + 1)
        left = rng.integers(min(0, w - crop), max(0, w - crop) + 1)
    else:
        jitter = rng.integers(-crop // 4, crop // 4 + 1, size=2)
        top, left = centre[0] - crop // 2 + jitter[0], centre[1] - crop // 2 + jitter[1]
    return int(top), int(left)


def cut(x: np.ndarray, top: int, left: int, crop: int) -> np.ndarray:
    """The crop x crop window of x (H, W) or (H, W, C) at (top, left), zero outside x."""
    h, w = x.shape[:2]
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + crop, h), min(left + crop, w)
    out = np.zeros((crop, crop, *x.shape[2:]), np.float32)
    if r1 > r0 and c1 > c0:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = x[r0:r1, c0:c1]
    return out


def place(fg: np.ndarray, alpha: np.ndarray, crop: int, centre: tuple[int, int] | None,
          rng: np.random.Generator, *more: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cut the same ``window`` from fg, alpha and ``more``, zero-padding outside the image.

    Returns the windows in argument order: fg (crop, crop, 3), alpha (crop, crop), then each
    of ``more`` (crop, crop, 3).
    """
    top, left = window(alpha.shape, crop, centre, rng)
    return tuple(cut(x, top, left, crop) for x in (fg, alpha, *more))


def random_background(bg: np.ndarray, size: tuple[int, int], rng: np.random.Generator
                      ) -> np.ndarray:
    """A random (height, width) = ``size`` window of a background photo, rescaled to cover it."""
    h, w = bg.shape[:2]
    scale = max(size[0] / h, size[1] / w) * rng.uniform(1.0, 1.6)
    bg = resize(bg, (max(size[0], round(h * scale)), max(size[1], round(w * scale))))
    top = rng.integers(0, bg.shape[0] - size[0] + 1)
    left = rng.integers(0, bg.shape[1] - size[1] + 1)
    return bg[top:top + size[0], left:left + size[1]]


def colour_jitter(x: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random brightness, contrast, saturation and a small hue-free colour cast."""
    gain = rng.uniform(1 - strength, 1 + strength)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - strength, 1 + strength)
    x = x * gain * rng.uniform(1 - strength / 4, 1 + strength / 4, size=3)
    return np.clip(x, 0, 1).astype(np.float32)
