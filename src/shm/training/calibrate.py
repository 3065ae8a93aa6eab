"""Temperature scaling of the T-Net, fitted on training photos (never val).

A T-Net unsure between person and background leaves grey alpha inside people and haze on
backgrounds; one factor on its logits (``TNetConfig.logit_scale``) sharpens or softens its
trimap without changing what it ranks first. ``fit_logit_scale`` picks, from a grid, the
factor with the lowest mean whole-image SAD of the fused alpha, on training photos as they
come and framed as portraits (``shm.data.augment.portrait_box``).

Usage: python -m shm.training.calibrate --weights DIR [--photos N] [--write]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from shm import metrics
from shm.data.augment import portrait_box
from shm.data.people import source_of
from shm.paths import default_data_root

GRID = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def calibration_photos(data: Path, count: int, seed: int = 0
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (image (H, W, 3) uint8, alpha (H, W) uint8) pairs from the train split, half
    from each source, each also framed as a portrait (so 2 * count pairs in all)."""
    people = data / "people"
    names = (people / "train.txt").read_text().split()
    rng = np.random.default_rng(seed)
    chosen = []
    for source, share in (("ccp", count - count // 2), ("other", count // 2)):
        pool = [n for n in names if source_of(n) == source]
        chosen += list(rng.choice(pool, size=min(len(pool), share), replace=False))
    pairs = []
    for name in chosen:
        image = np.asarray(Image.open(people / "images" / f"{name}.jpg").convert("RGB"))
        alpha = np.asarray(Image.open(people / "alphas" / f"{name}.png").convert("L"))
        pairs.append((image, alpha))
        box = portrait_box(alpha.astype(np.float32) / 255, rng)
        if box is not None:
            top, left, h, w = box
            pairs.append((image[top:top + h, left:left + w], alpha[top:top + h, left:left + w]))
    return pairs


def fit_logit_scale(weights: Path | None, photos: Sequence[tuple[np.ndarray, np.ndarray]],
                    grid: Sequence[float] = GRID) -> dict[float, float]:
    """Mean whole-image SAD over ``photos`` for the model of ``weights`` (None: the shipped
    one) with its T-Net's logits scaled by each factor of ``grid`` (relative to the scale the
    weights already carry). Returns {factor: mean SAD}."""
    from shm.inference.predictor import load_model

    matter = load_model(weights)
    tnet = matter.model.tnet
    base = tnet.logit_scale
    sads = {}
    for factor in grid:
        tnet.logit_scale = base * factor
        sads[factor] = float(np.mean([metrics.sad_whole(matter.predict(image).alpha_u8(), alpha)
                                      for image, alpha in photos]))
    tnet.logit_scale = base
    return sads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="a weights folder")
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--photos", type=int, default=40, help="training photos (and as many portraits)")
    parser.add_argument("--write", action="store_true",
                        help="store the best scale in the folder's config.json")
    args = parser.parse_args()
    from shm.pretrained import load_pretrained, save_pretrained

    sads = fit_logit_scale(args.weights, calibration_photos(args.data, args.photos))
    best = min(sads, key=sads.get)
    model = load_pretrained(args.weights)
    scale = model.tnet.logit_scale * best
    report = {"photos": args.photos, "sad_by_factor": sads, "best_factor": best,
              "logit_scale": scale}
    print(json.dumps(report, indent=2))
    if args.write:
        model.config = replace(model.config, tnet=replace(model.config.tnet, logit_scale=scale))
        save_pretrained(model, args.weights)
        (args.weights / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
