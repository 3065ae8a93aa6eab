"""Colour-decontaminated foreground for cutouts (no halo of the old background)."""

from __future__ import annotations

import numpy as np

from shm.data.composite import estimate_foreground

MARGIN = 16


def decontaminate(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours of a photo given its alpha.

    image: (H, W, 3) uint8; alpha: (H, W) float32 in [0, 1]. Returns (H, W, 3) uint8.
    Colours are re-estimated only inside the bounding box of the soft edge (plus a margin);
    pixels elsewhere are opaque or transparent and keep the photo's colours.
    """
    soft = (alpha > 1 / 255) & (alpha < 254 / 255)
    out = image.copy()
    if not soft.any():
        return out
    rows, cols = np.flatnonzero(soft.any(1)), np.flatnonzero(soft.any(0))
    r0, r1 = max(rows[0] - MARGIN, 0), min(rows[-1] + MARGIN + 1, image.shape[0])
    c0, c1 = max(cols[0] - MARGIN, 0), min(cols[-1] + MARGIN + 1, image.shape[1])
    fg = estimate_foreground(image[r0:r1, c0:c1], alpha[r0:r1, c0:c1])
    out[r0:r1, c0:c1] = (fg * 255 + 0.5).astype(np.uint8)
    return out
