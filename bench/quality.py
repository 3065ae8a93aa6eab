"""Quality on the val split of ../shared/data/people: shm against the peers, same images, same run.

Writes bench/results/quality.json and bench/results/quality.md (the table the README quotes).
Trimaps for SAD/Grad/Conn in the unknown band come from the labels (shm.trimap.from_alpha,
band radius 1% of the short side). Usage: python bench/quality.py [--weights DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import RVM, MediaPipeSelfie, U2Netp

from shm import metrics, trimap
from shm.inference.predictor import load_model
from shm.paths import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("sad_whole", "mse_whole", "mad_whole", "sad", "grad", "conn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    people = args.data / "people"
    names = (people / "val.txt").read_text().split()
    if args.limit:
        names = names[: args.limit]
    shm_model = load_model(args.weights)
    methods = {"shm (mobile)": lambda im: shm_model.predict(im).alpha,
               MediaPipeSelfie.name: MediaPipeSelfie(), RVM.name: RVM(), U2Netp.name: U2Netp()}
    rows = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    pixels = 0
    for i, name in enumerate(names):
        image = np.asarray(Image.open(people / "images" / f"{name}.jpg").convert("RGB"))
        gt = np.asarray(Image.open(people / "alphas" / f"{name}.png").convert("L"))
        tri = trimap.from_alpha(gt, max(1, round(0.01 * min(gt.shape))))
        pixels += gt.size
        for method, fn in methods.items():
            start = time.perf_counter()
            alpha = fn(image)
            seconds[method] += time.perf_counter() - start
            rows[method].append(metrics.evaluate((alpha * 255 + 0.5).astype(np.uint8), gt, tri))
        print(f"{i + 1}/{len(names)} {name}", file=sys.stderr)
    base = MediaPipeSelfie.name
    summary = {}
    for method in methods:
        mean = {k: float(np.nanmean([r[k] for r in rows[method]])) for k in COLUMNS}
        mean["seconds_per_image"] = seconds[method] / len(names)
        summary[method] = mean
    for method in methods:
        summary[method]["sad_whole_vs_mediapipe"] = (summary[method]["sad_whole"]
                                                     / summary[base]["sad_whole"])
    RESULTS.mkdir(exist_ok=True)
    report = {"images": len(names), "mean_megapixels": pixels / len(names) / 1e6,
              "labels": "RVM-ensemble pseudo-labels (see ../shared/data/README.md)",
              "methods": summary}
    (RESULTS / "quality.json").write_text(json.dumps(report, indent=2))
    lines = [f"Val split of ../shared/data/people: {len(names)} photos, mean "
             f"{report['mean_megapixels']:.2f} MP, 2 CPU cores, one run.", "",
             "| method | SAD (whole) | MSE (whole) | MAD (whole) | SAD (band) | Grad | Conn | "
             "SAD vs MediaPipe | s / image |", "|---|---|---|---|---|---|---|---|---|"]
    for method, m in summary.items():
        lines.append(f"| {method} | {m['sad_whole']:.2f} | {m['mse_whole']:.4f} | "
                     f"{m['mad_whole']:.4f} | {m['sad']:.2f} | {m['grad']:.2f} | {m['conn']:.2f} | "
                     f"{m['sad_whole_vs_mediapipe']:.2f}x | {m['seconds_per_image']:.3f} |")
    (RESULTS / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
