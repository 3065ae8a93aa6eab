"""Val people composited on backgrounds no model here trained on: five photos that ship with
scikit-image and are in no training pool of ../shared/data/backgrounds (the Hubble deep field,
an immunohistochemistry slide, a retina, coins, the moon; grey ones copied to 3 channels).

Every val photo's person is laid over each background as ../shared/bench/robustness.py's
``bg_*`` rows do (``I * a + B * (1 - a)`` with the reference alpha, the background resized to
cover the photo and centre-cropped) and scored by whole-image SAD (/1000), for shm
(``--weights``, default the shipped model), an optional ``--baseline`` model and MediaPipe,
same images, same run. Prints a table with shm's SAD as a ratio of the baseline's and writes
bench/results/unseen_backgrounds.json and .md.

Usage: python bench/unseen_backgrounds.py [--weights DIR] [--baseline DIR] [--every N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import MediaPipeSelfie

from shm import metrics
from shm.inference.predictor import load_model
from shm.paths import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
BACKGROUNDS = ("hubble_deep_field", "immunohistochemistry", "retina", "coins", "moon")


def background(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of one of scikit-image's bundled photos."""
    image = getattr(skdata, name)()
    return np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image[..., :3]


def composite(image: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 photo ``image`` with its person (``alpha`` (H, W) uint8) over ``bg``,
    resized to cover (H, W) and centre-cropped."""
    h, w = alpha.shape
    s = max(h / bg.shape[0], w / bg.shape[1])
    size = (max(w, round(bg.shape[1] * s)), max(h, round(bg.shape[0] * s)))
    big = cv2.resize(bg, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    top, left = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    a = alpha.astype(np.float32)[..., None] / 255
    out = a * image + (1 - a) * big[top:top + h, left:left + w]
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="weights folder to compare with (e.g. the previous release)")
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--every", type=int, default=1, help="every Nth val photo")
    parser.add_argument("--out", type=Path, default=RESULTS / "unseen_backgrounds.json")
    args = parser.parse_args()
    people = args.data / "people"
    if not (people / "val.txt").is_file():
        sys.exit(f"{people / 'val.txt'} is missing; give --data the folder holding people/.")
    names = (people / "val.txt").read_text().split()[::args.every]
    paths = {p.stem: p for p in (people / "images").iterdir()}
    methods = {"shm": load_model(args.weights).predict}
    if args.baseline:
        methods["baseline"] = load_model(args.baseline).predict
    mediapipe = MediaPipeSelfie()
    backgrounds = {b: background(b) for b in BACKGROUNDS}
    sads: dict[str, dict[str, list[float]]] = {b: {m: [] for m in [*methods, "mediapipe"]}
                                               for b in BACKGROUNDS}
    for i, name in enumerate(names):
        image = np.asarray(Image.open(paths[name]).convert("RGB")).astype(np.float32)
        alpha = np.asarray(Image.open(people / "alphas" / f"{name}.png").convert("L"))
        for b, bg in backgrounds.items():
            x = composite(image, alpha, bg)
            for m, predict in methods.items():
                sads[b][m].append(metrics.sad_whole(predict(x).alpha_u8(), alpha))
            sads[b]["mediapipe"].append(metrics.sad_whole(metrics.to_uint8(mediapipe(x)), alpha))
        print(f"{i + 1}/{len(names)} {name}", file=sys.stderr, flush=True)

    means = {b: {m: float(np.mean(v)) for m, v in d.items()} for b, d in sads.items()}
    means["mean of the five"] = {m: float(np.mean([means[b][m] for b in BACKGROUNDS]))
                                 for m in means[BACKGROUNDS[0]]}
    cols = list(means[BACKGROUNDS[0]])
    lines = [f"{len(names)} val photos (every {args.every}), whole-image SAD, means over photos; "
             f"shm = {args.weights or 'the shipped model'}"
             + (f", baseline = {args.baseline}" if args.baseline else "") + ".", "",
             "| background | " + " | ".join(cols) + (" | shm / baseline |" if args.baseline else " |"),
             "|---" * (len(cols) + 1 + bool(args.baseline)) + "|"]
    for b, row in means.items():
        ratio = f" {row['shm'] / row['baseline']:.2f}x |" if args.baseline else ""
        lines.append(f"| {b} | " + " | ".join(f"{row[m]:.2f}" for m in cols) + " |" + ratio)
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"names": names, "means": means, "sad": sads}, indent=1))
    args.out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
