"""Interleaved A/B of two weight folders: time per photo at one size, same process, alternating
A and B on every round so a slow spell of the machine hits both alike. The photos are the
public-domain astronaut and, when ../shared is there, val photos, all scaled to ``--mp``.
Writes bench/results/speed_ab.json.

Usage: python bench/speed_ab.py OLD_WEIGHTS [NEW_WEIGHTS] [--mp 1.7] [--rounds 9] [--val 4]
(NEW_WEIGHTS defaults to the shipped model.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shm.inference.predictor import load_model
from shm.paths import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"


def photos(megapixels: float, val: int) -> dict[str, np.ndarray]:
    """name -> (H, W, 3) uint8, each scaled to about ``megapixels``."""
    from skimage import data

    found = {"astronaut": data.astronaut()}
    people = default_data_root() / "people"
    if val and (people / "val.txt").is_file():
        for i, name in enumerate((people / "val.txt").read_text().split()[::37][:val]):
            path = people / "images" / f"{name}.jpg"
            found[f"val-{i}"] = np.asarray(Image.open(path).convert("RGB"))
    out = {}
    for name, img in found.items():
        s = np.sqrt(megapixels * 1e6 / (img.shape[0] * img.shape[1]))
        size = (round(img.shape[1] * s), round(img.shape[0] * s))
        out[name] = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("a", type=Path, help="weights folder A (e.g. the previous release)")
    parser.add_argument("b", type=Path, nargs="?", default=None, help="weights B (default shipped)")
    parser.add_argument("--mp", type=float, default=1.7)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--val", type=int, default=4, help="val photos besides the astronaut")
    args = parser.parse_args()
    torch.set_num_threads(2)
    models = {"A": load_model(args.a), "B": load_model(args.b)}
    images = photos(args.mp, args.val)
    times: dict = {k: {n: [] for n in images} for k in models}
    for model in models.values():  # warm-up
        model.predict(images["astronaut"])
    for r in range(args.rounds):
        for key in ("A", "B") if r % 2 == 0 else ("B", "A"):
            for name, img in images.items():
                start = time.perf_counter()
                models[key].predict(img)
                times[key][name].append(time.perf_counter() - start)
    median = {k: {n: float(np.median(t)) for n, t in per.items()} for k, per in times.items()}
    total = {k: sum(per.values()) for k, per in median.items()}
    result = {"a": str(args.a), "b": str(args.b or "shipped"), "mp": args.mp,
              "rounds": args.rounds, "median_s": median, "sum_of_medians_s": total,
              "b_over_a": total["B"] / total["A"]}
    (RESULTS / "speed_ab.json").write_text(json.dumps(result, indent=1) + "\n")
    for name in images:
        print(f"{name[:40]:40s} A {median['A'][name]:.3f} s  B {median['B'][name]:.3f} s")
    print(f"sum of medians: A {total['A']:.3f} s, B {total['B']:.3f} s, B/A {result['b_over_a']:.2f}")


if __name__ == "__main__":
    main()
