"""Speed against quality for each inference setting: time at 1.7 MP and whole-image SAD on val.

Every setting (the T-Net's input long side; the tiled M-Net's cell size, context margin and
skip threshold eps; the backend) runs on the same photos in the same run: the astronaut at
1.7 MP (median of 3, alpha only) and all photos of the val split of ../shared/data/people
(mean whole-image SAD against the labels). The first row is the shipped default; ratios are
against it. Writes bench/results/tradeoff.json and bench/results/tradeoff.md.
Usage: python bench/tradeoff.py [--weights DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import median_seconds, photo

from shm import metrics
from shm.inference.predictor import load_model
from shm.inference.tiles import TileConfig
from shm.paths import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = TileConfig()
SETTINGS = [("torch", DEFAULT, None), ("torch", DEFAULT, 384), ("torch", DEFAULT, 512)] + [
    ("torch", replace(DEFAULT, **change), None) for change in
    ({"eps": 0.05}, {"eps": 0.2}, {"eps": 0.7}, {"tile": 64}, {"tile": 128}, {"tile": 192},
     {"max_window": 0}, {"margin": 32}, {"margin": 32, "max_window": 0})] + [
    ("onnx", DEFAULT, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    people = args.data / "people"
    names = (people / "val.txt").read_text().split()[: args.limit or None]
    photos = [(np.asarray(Image.open(people / "images" / f"{n}.jpg").convert("RGB")),
               np.asarray(Image.open(people / "alphas" / f"{n}.png").convert("L"))) for n in names]
    astronaut = photo(1.7)
    rows = []
    for backend, tiles, long_side in SETTINGS:
        model = load_model(args.weights, backend=backend, tiles=tiles)
        if long_side:
            model.model.tnet_long_side = long_side
        sad = np.mean([metrics.sad_whole(model.predict(im).alpha_u8(), gt) for im, gt in photos])
        rows.append({"backend": backend, "tnet_long_side": model.model.tnet_long_side,
                     "tile": tiles.tile, "margin": tiles.margin,
                     "eps": tiles.eps, "max_window": tiles.max_window,
                     "seconds_1.7mp": median_seconds(partial(model.predict, astronaut), 3),
                     "val_sad_whole": float(sad)})
        print(rows[-1], file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tradeoff.json").write_text(json.dumps(rows, indent=2))
    base = rows[0]
    lines = [f"Astronaut at 1.7 MP (alpha only, median of 3) and whole-image SAD on {len(photos)} val "
             "photos; ratios against the default (first row). max window 0: a window per cell.", "",
             "| backend | T-Net side | tile | margin | eps | max window | s at 1.7 MP | time vs default "
             "| val SAD | SAD vs default |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['tnet_long_side']} | {r['tile']} | {r['margin']} | "
                     f"{r['eps']} | {r['max_window']} | "
                     f"{r['seconds_1.7mp']:.3f} | {r['seconds_1.7mp'] / base['seconds_1.7mp']:.2f}x | "
                     f"{r['val_sad_whole']:.2f} | {r['val_sad_whole'] / base['val_sad_whole']:.3f}x |")
    (RESULTS / "tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
