"""Colour-decontaminated foreground for cutouts (no halo of the old background).

The colours come from the multilevel foreground solver of pymatting (Germer et al. 2020,
``estimate_foreground_ml``, MIT licence; its loop is followed here step for step): from a 1x1
image up to the photo's size, each level starts from the one below, resized by nearest
neighbour, and relaxes foreground F and background B at its pixels. Here the two finest
levels, 94% of all the levels' pixels, relax only the pixels within NEAR of soft alpha (alpha
that is saved as neither 0 nor 255); elsewhere alpha is 0 or 1 and F is the photo. Where
alpha does not change, F and B barely couple across pixels (the regulariser is 1e-5), so the
result matches the solver run over the whole photo, and the cost follows the length of the
soft edge, not the photo's area.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

NEAR = 4              # px around soft alpha that the two finest levels relax
REGULARIZATION = 1e-5  # pymatting's defaults from here on
SMALL_SIZE, SMALL_ITERATIONS, BIG_ITERATIONS = 32, 10, 2
GRADIENT_WEIGHT = 1.0


def soft_mask(alpha: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels within NEAR of soft alpha (0.5/255 < alpha < 254.5/255: saved
    as 8 bits, neither 0 nor 255) of ``alpha``, (H, W) float32 in [0, 1]. Every pixel whose
    saved alpha is above 0 thus has NEAR pixels of relaxed context, which keeps its colour tied
    to the whole-photo solver's."""
    soft = ((alpha > 0.5 / 255) & (alpha < 254.5 / 255)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * NEAR + 1,) * 2)
    return cv2.dilate(soft, kernel) > 0


def decontaminate(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours of a photo given its alpha.

    image: (H, W, 3) uint8; alpha: (H, W) float32 in [0, 1]. Returns (H, W, 3) uint8: the
    multilevel solver's foreground within ``soft_mask``, the photo elsewhere.
    """
    near = soft_mask(alpha)
    out = image.copy()
    if not near.any():
        return out
    a = np.ascontiguousarray(alpha, dtype=np.float32)
    fg = np.zeros((1, 1, 3), np.float32) + _mean(image, a > 0.9)
    bg = np.zeros((1, 1, 3), np.float32) + _mean(image, a < 0.1)
    h0, w0 = a.shape
    levels = math.ceil(math.log2(max(h0, w0)))
    for level in range(levels + 1):
        h, w = round(h0 ** (level / levels)), round(w0 ** (level / levels))
        rows, cols = np.arange(h) * h0 // h, np.arange(w) * w0 // w
        fg, bg = _resize(fg, h, w), _resize(bg, h, w)
        iterations = SMALL_ITERATIONS if max(h, w) <= SMALL_SIZE else BIG_ITERATIONS
        _relax(image, a, near, rows, cols, fg, bg, level >= levels - 1, iterations)
    out[near] = (fg[near] * 255 + 0.5).astype(np.uint8)
    return out


def _mean(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Mean colour in [0, 1] of ``image`` (uint8) over ``where`` (0 where it is empty)."""
    return np.float32(cv2.mean(image, where.astype(np.uint8))[:3]) / 255


@njit(cache=True, nogil=True)
def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:  # pragma: no cover (compiled)
    """(h, w, 3) nearest-neighbour resize of ``x`` (h', w', 3), pymatting's rounding."""
    out = np.empty((h, w, 3), np.float32)
    for y in range(h):
        row = y * x.shape[0] // h
        for col in range(w):
            src = col * x.shape[1] // w
            for c in range(3):
                out[y, col, c] = x[row, src, c]
    return out


@njit(cache=True, nogil=True)
def _relax(image: np.ndarray, alpha: np.ndarray, near: np.ndarray, rows: np.ndarray,
           cols: np.ndarray, fg: np.ndarray, bg: np.ndarray, masked: bool, iterations: int
           ) -> None:  # pragma: no cover (compiled)
    """``iterations`` in-place sweeps of the solver over one level, of the pixels in ``near``
    only if ``masked``: each pixel's F and B solve its compositing equation plus smoothness
    towards its four neighbours' (weighted by the alpha gradient), in pymatting's order and
    arithmetic. The level samples ``image`` (H, W, 3) uint8, ``alpha`` and ``near`` at
    ``rows`` x ``cols``; ``fg`` and ``bg`` are its (h, w, 3) float32 estimates."""
    h, w = len(rows), len(cols)
    dx, dy = (-1, 1, 0, 0), (0, 0, -1, 1)
    b = np.zeros((2, 3), np.float32)
    for _ in range(iterations):
        for y in range(h):
            for x in range(w):
                if masked and not near[rows[y], cols[x]]:
                    continue
                a0 = alpha[rows[y], cols[x]]
                a1 = 1.0 - a0
                a00, a01, a11 = a0 * a0, a0 * a1, a1 * a1
                for c in range(3):
                    colour = np.float32(image[rows[y], cols[x], c]) / np.float32(255)
                    b[0, c] = a0 * colour
                    b[1, c] = a1 * colour
                for d in range(4):
                    x2 = max(0, min(w - 1, x + dx[d]))
                    y2 = max(0, min(h - 1, y + dy[d]))
                    da = REGULARIZATION + GRADIENT_WEIGHT * abs(a0 - alpha[rows[y2], cols[x2]])
                    a00 += da
                    a11 += da
                    for c in range(3):
                        b[0, c] += da * fg[y2, x2, c]
                        b[1, c] += da * bg[y2, x2, c]
                inv = 1.0 / (a00 * a11 - a01 * a01)
                m00, m01, m11 = inv * a11, inv * -a01, inv * a00
                for c in range(3):
                    fg[y, x, c] = max(0.0, min(1.0, m00 * b[0, c] + m01 * b[1, c]))
                    bg[y, x, c] = max(0.0, min(1.0, m01 * b[0, c] + m11 * b[1, c]))
