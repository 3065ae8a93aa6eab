"""Cost against outline length and against image area: shm's alpha time on composed photos.

Two series, both built from the public-domain astronaut:
- area: one astronaut of 1 MP centred on a plain grey canvas of 1 to 24 MP (outline fixed,
  area grows);
- outline: a 4 MP canvas tiled with k x k astronauts, k = 1..6 (area fixed, outline grows
  with k).
Each point: median seconds of ``predict`` (alpha only), M-Net cells run, and the outline length
(pixels on the alpha = 0.5 contour of the result). Writes bench/results/outline.json,
bench/results/outline.md and docs/outline.png.
Usage: python bench/outline.py [--weights DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import median_seconds

from shm.inference.predictor import load_model

ROOT = Path(__file__).resolve().parent.parent
GREY = 128


def astronaut(side: int) -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)


def area_photo(megapixels: float) -> np.ndarray:
    """A 1000 x 1000 astronaut centred on a 3:2 grey canvas of ``megapixels``."""
    w = max(1000, round((megapixels * 1e6 * 1.5) ** 0.5))
    h = max(1000, round(megapixels * 1e6 / w))
    canvas = np.full((h, w, 3), GREY, np.uint8)
    top, left = (h - 1000) // 2, (w - 1000) // 2
    canvas[top:top + 1000, left:left + 1000] = astronaut(1000)
    return canvas


def grid_photo(k: int, side: int = 2000) -> np.ndarray:
    """A side x side (4 MP) canvas tiled with k x k astronauts."""
    cell = side // k
    tile = np.tile(astronaut(cell), (k, k, 1))
    canvas = np.full((side, side, 3), GREY, np.uint8)
    canvas[:tile.shape[0], :tile.shape[1]] = tile
    return canvas


def outline_length(alpha: np.ndarray) -> int:
    """Pixels on the boundary of alpha > 0.5."""
    hard = (alpha > 0.5).astype(np.uint8)
    return int((cv2.morphologyEx(hard, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0).sum() // 2)


def measure(model, image: np.ndarray, repeats: int) -> dict:
    with torch.no_grad():
        canvas = model.canvas(image)
        cells = len(canvas.cells_needing_mnet())
    alpha = model.predict(image).alpha
    return {"megapixels": image.shape[0] * image.shape[1] / 1e6,
            "seconds": median_seconds(lambda: model.predict(image), repeats),
            "cells": cells, "cells_total": canvas.rows * canvas.cols,
            "outline_px": outline_length(alpha)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    area, grid = results["area"], results["outline"]
    left.plot([p["megapixels"] for p in area], [p["seconds"] for p in area], "o-")
    left.set(xlabel="image area (MP), outline fixed", ylabel="seconds (alpha only)",
             title="one subject, growing canvas", ylim=(0, None))
    right.plot([p["outline_px"] / 1000 for p in grid], [p["seconds"] for p in grid], "o-")
    right.set(xlabel="outline length (thousand px), 4 MP fixed", title="4 MP canvas, more subjects",
              ylim=(0, None))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model(args.weights)
    results = {"area": [measure(model, area_photo(mp), args.repeats) for mp in (1, 2, 4, 8, 16, 24)],
               "outline": [measure(model, grid_photo(k), args.repeats) for k in range(1, 7)]}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "outline.json").write_text(json.dumps(results, indent=2))
    lines = ["| series | MP | outline (px) | M-Net cells | seconds |", "|---|---|---|---|---|"]
    for series, points in results.items():
        lines += [f"| {series} | {p['megapixels']:.1f} | {p['outline_px']} | "
                  f"{p['cells']}/{p['cells_total']} | {p['seconds']:.3f} |" for p in points]
    (out / "outline.md").write_text("\n".join(lines) + "\n")
    plot(results, ROOT / "docs" / "outline.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
