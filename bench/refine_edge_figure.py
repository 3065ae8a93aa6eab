"""README figure of Refine edge: a stroke along the astronaut's hair, before and after.

Uses only scikit-image's public-domain astronaut photo. Runs the shipped model in an editor
session, paints one Refine stroke (30 px brush, default edge radius) along the top of the head,
and writes docs/refine-edge.png, cropped to the stroke and enlarged 2x: the photo with the
stroke's centre line, the alpha before and after; below, the photo and the cutout over a plain
colour before and after. Prints the stroke's time.
Usage: python bench/refine_edge_figure.py
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from shm.editor.session import EditSession
from shm.inference.foreground import decontaminate
from shm.inference.predictor import load_model

OUT = Path(__file__).resolve().parents[1] / "docs" / "refine-edge.png"
BRUSH = 30
ZOOM = 2
BACKDROP = np.array([30, 80, 60], np.float32)  # dark green: light strands show against it


def along_top(alpha: np.ndarray, share: float = 0.12, step: int = 8) -> np.ndarray:
    """(N, 2) [x, y] points every ``step`` px along the outline (alpha 0.5) of ``alpha``
    ((H, W) float32 in [0, 1]) within the top ``share`` of the person's height: the longest
    such stretch."""
    hard = (alpha > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)[:, 0, :]
    rows = np.flatnonzero(hard.any(1))
    top = outline[:, 1] <= rows[0] + share * (rows[-1] - rows[0] + 1)
    start = np.flatnonzero(~top)[0]
    outline, top = np.roll(outline, -start, axis=0), np.roll(top, -start)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], top.astype(int), [0]])))
    first, last = max(zip(edges[::2], edges[1::2], strict=True), key=lambda r: r[1] - r[0])
    return outline[first:last:step].astype(float)


def cutout(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the decontaminated foreground over BACKDROP."""
    a = alpha[..., None]
    return (decontaminate(image, alpha) * a + BACKDROP * (1 - a) + 0.5).astype(np.uint8)


def main() -> None:
    image = data.astronaut()
    session = EditSession(load_model(), image)
    before = session.canvas.alpha()[0, 0].numpy().copy()
    points = along_top(before)
    start = time.perf_counter()
    change = session.stroke("refine", BRUSH, points.tolist())
    print(f"refine stroke ({len(points)} points, {BRUSH} px brush): "
          f"{(time.perf_counter() - start) * 1000:.0f} ms")
    after = session.canvas.alpha()[0, 0].numpy()
    top, left, bottom, right = change.box
    crop = (slice(top, bottom), slice(left, right))
    photo = image.copy()
    cv2.polylines(photo, [np.round(points).astype(np.int32)], False, (250, 210, 40), 1, cv2.LINE_AA)
    grey = [np.repeat((a[..., None] * 255 + 0.5).astype(np.uint8), 3, 2) for a in (before, after)]
    rows = [[photo, grey[0], grey[1]], [image, cutout(image, before), cutout(image, after)]]
    gap = np.full((bottom - top, 4, 3), 255, np.uint8)
    lines = [np.concatenate([p for panel in row for p in (panel[crop], gap)][:-1], 1) for row in rows]
    grid = np.concatenate([lines[0], np.full((4, lines[0].shape[1], 3), 255, np.uint8), lines[1]])
    Image.fromarray(grid).resize((grid.shape[1] * ZOOM, grid.shape[0] * ZOOM),
                                 Image.Resampling.LANCZOS).save(OUT)
    changed = np.abs(after - before)
    print(f"{OUT}: alpha changed on {(changed > 1 / 255).sum()} pixels, "
          f"by up to {changed.max():.2f}")


if __name__ == "__main__":
    main()
