"""The trimap encoding, defined once and imported everywhere.

Channel order of the T-Net logits and of the M-Net's trimap input is
(background, unknown, foreground). Stored trimaps are uint8 images with
0 = background, 128 = unknown, 255 = foreground, as in Deep Image Matting.
"""

from __future__ import annotations

import numpy as np

BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2
CHANNELS = ("background", "unknown", "foreground")
VALUES = np.array([0, 128, 255], dtype=np.uint8)  # uint8 value of each class, in channel order


def to_classes(trimap: np.ndarray) -> np.ndarray:
    """Map a uint8 trimap to class indices.

    trimap: (H, W) uint8; 128 exactly is unknown, values below 128 background, above foreground.
    Returns (H, W) int64 in {0, 1, 2} following ``CHANNELS``.
    """
    classes = np.full(trimap.shape, UNKNOWN, dtype=np.int64)
    classes[trimap < 128] = BACKGROUND
    classes[trimap > 128] = FOREGROUND
    return classes


def to_uint8(classes: np.ndarray) -> np.ndarray:
    """Map (H, W) class indices in {0, 1, 2} to a (H, W) uint8 trimap in {0, 128, 255}."""
    return VALUES[np.asarray(classes)]


def from_alpha(alpha: np.ndarray, width: int) -> np.ndarray:
    """Ground-truth trimap from an alpha matte, as DESIGN.md specifies.

    alpha: (H, W) float in [0, 1] (or uint8, divided by 255).
    width: dilation radius in pixels (>= 1) of the unknown band.
    Returns (H, W) uint8 in {0, 128, 255}: unknown = dilate(soft pixels | edge of alpha > 0.5),
    foreground = alpha == 1 elsewhere, background = alpha == 0 elsewhere.
    """
    import cv2

    a = np.asarray(alpha)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    if width < 1:
        raise ValueError(f"trimap width must be at least 1 pixel, got {width}.")
    eps = 1.0 / 255.0
    soft = (a > eps) & (a < 1 - eps)
    hard = (a > 0.5).astype(np.uint8)
    edge = cv2.morphologyEx(hard, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    unknown = cv2.dilate((soft | edge).astype(np.uint8), kernel) > 0
    trimap = np.where(a > 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    return trimap
