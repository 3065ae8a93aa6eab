"""How sure the mattes are on clean val photos: grey inside people and haze on backgrounds.

For every Nth val photo of ../shared/data/people, ``shm.metrics.unsure_shares`` (the share of
pixels whose reference is >= 0.99 and prediction < 0.9, and whose reference is <= 0.01 and
prediction > 0.1) and whole-image SAD, for shm (``--weights``, default the shipped model) and
the peers, same photos, same run; means over photos. Writes bench/results/confidence.json and
prints a table. Usage: python bench/confidence.py [--weights DIR] [--every N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import RVM, MediaPipeSelfie

from shm import metrics
from shm.inference.predictor import load_model
from shm.paths import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "confidence.json")
    args = parser.parse_args()
    people = args.data / "people"
    names = (people / "val.txt").read_text().split()[::args.every]
    model = load_model(args.weights)
    methods = {"shm": lambda im: model.predict(im).alpha, "mediapipe": MediaPipeSelfie(),
               "rvm": RVM()}
    rows = {m: [] for m in methods}
    for i, name in enumerate(names):
        image = np.asarray(Image.open(people / "images" / f"{name}.jpg").convert("RGB"))
        gt = np.asarray(Image.open(people / "alphas" / f"{name}.png").convert("L"))
        for method, fn in methods.items():
            alpha = fn(image)
            rows[method].append({**metrics.unsure_shares(alpha, gt),
                                 "sad_whole": metrics.sad_whole(metrics.to_uint8(alpha), gt)})
        print(f"{i + 1}/{len(names)} {name}", file=sys.stderr)
    summary = {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in rows.items()}
    report = {"weights": str(args.weights or "shipped"), "photos": len(names), "every": args.every,
              "methods": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(names)} val photos (every {args.every}), means over photos:")
    print("| method | solid < 0.9 | bg > 0.1 | SAD (whole) |\n|---|---|---|---|")
    for m, s in summary.items():
        print(f"| {m} | {100 * s['solid_below_0_9']:.1f}% | {100 * s['bg_above_0_1']:.1f}% | "
              f"{s['sad_whole']:.2f} |")


if __name__ == "__main__":
    main()
