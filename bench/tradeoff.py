"""Speed against quality for each inference setting: time at 1.7 MP and whole-image SAD on val.

Every setting (the T-Net's input long side and mirror-image averaging; the tiled M-Net's cell
size, context margin and skip threshold eps; the backend; batch norm folded or not) runs on
the same photos in the same run: the astronaut at 1.7 MP (alpha only; every setting timed once
per round, ``--rounds`` rounds interleaved, median) and all photos of the val split of
../shared/data/people (mean whole-image SAD against the labels).
The first row is the shipped default; ratios are against it. Writes bench/results/tradeoff.json
and bench/results/tradeoff.md.
Usage: python bench/tradeoff.py [--weights DIR] [--limit N] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import photo

from shm import metrics
from shm.inference.predictor import Matter, load_model
from shm.inference.tiles import TileConfig
from shm.paths import default_data_root
from shm.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = TileConfig()
BASE = {"backend": "torch", "tiles": DEFAULT, "long_side": None, "flip": True, "fold": True}
SETTINGS = [BASE] + [{**BASE, **change} for change in (
    {"flip": False}, {"fold": False}, {"long_side": 384}, {"long_side": 512},
    *({"tiles": replace(DEFAULT, **tiles)} for tiles in (
        {"eps": 0.05}, {"eps": 0.2}, {"eps": 0.7}, {"tile": 64}, {"tile": 128}, {"tile": 192},
        {"max_window": 0}, {"margin": 32}, {"margin": 32, "max_window": 0})),
    {"backend": "onnx"}, {"backend": "onnx", "flip": False})]


def build(weights: Path | None, setting: dict) -> Matter:
    """The model of one setting; fold False: batch norms kept as separate layers."""
    kwargs = {"tiles": setting["tiles"], "flip": setting["flip"]}
    if setting["fold"]:
        model = load_model(weights, backend=setting["backend"], **kwargs)
    else:
        model = Matter(load_pretrained(weights), **kwargs)
    if setting["long_side"]:
        model.model.tnet_long_side = setting["long_side"]
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    people = args.data / "people"
    names = (people / "val.txt").read_text().split()[: args.limit or None]
    photos = [(np.asarray(Image.open(people / "images" / f"{n}.jpg").convert("RGB")),
               np.asarray(Image.open(people / "alphas" / f"{n}.png").convert("L"))) for n in names]
    astronaut = photo(1.7)
    rows, models = [], [build(args.weights, setting) for setting in SETTINGS]
    for setting, model in zip(SETTINGS, models, strict=True):
        tiles = setting["tiles"]
        sad = np.mean([metrics.sad_whole(model.predict(im).alpha_u8(), gt) for im, gt in photos])
        rows.append({"backend": setting["backend"], "fold": setting["fold"],
                     "tnet_long_side": model.model.tnet_long_side, "flip": setting["flip"],
                     "tile": tiles.tile, "margin": tiles.margin,
                     "eps": tiles.eps, "max_window": tiles.max_window,
                     "val_sad_whole": float(sad)})
        print(rows[-1], file=sys.stderr)
    for model in models:  # warm-up at this photo size
        model.predict(astronaut)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits all alike
        for model, spent in zip(models, times, strict=True):
            start = time.perf_counter()
            model.predict(astronaut)
            spent.append(time.perf_counter() - start)
    for row, spent in zip(rows, times, strict=True):
        row["seconds_1.7mp"] = float(np.median(spent))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tradeoff.json").write_text(json.dumps(rows, indent=2))
    base = rows[0]
    lines = [f"Astronaut at 1.7 MP (alpha only, median of {args.rounds} interleaved rounds) and "
             f"whole-image SAD on {len(photos)} val "
             "photos; ratios against the default (first row). flip: T-Net also on the mirror image; "
             "fold: batch norm folded into the convolutions; max window 0: a window per cell.", "",
             "| backend | fold | T-Net side | flip | tile | margin | eps | max window | s at 1.7 MP "
             "| time vs default | val SAD | SAD vs default |", "|---" * 12 + "|"]
    yes = {True: "yes", False: "no"}
    for r in rows:
        lines.append(f"| {r['backend']} | {yes[r['fold']]} | {r['tnet_long_side']} | {yes[r['flip']]} | "
                     f"{r['tile']} | {r['margin']} | "
                     f"{r['eps']} | {r['max_window']} | "
                     f"{r['seconds_1.7mp']:.3f} | {r['seconds_1.7mp'] / base['seconds_1.7mp']:.2f}x | "
                     f"{r['val_sad_whole']:.2f} | {r['val_sad_whole'] / base['val_sad_whole']:.3f}x |")
    (RESULTS / "tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
