"""Time of shm.metrics on a 2048x2048 image with a 20% unknown band.

Baseline in the same run: a float64 loop-free reference of SAD alone (np.abs(...).sum()), so the
ratio says what the exact, reference-matching metrics cost on top of a bare sum.
Writes bench/results/metrics.json. Usage: python bench/metrics_speed.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from shm import metrics

RESULTS = Path(__file__).resolve().parent / "results"


def case(size: int = 2048, band: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    gt = np.clip((0.7 - r) / 0.05 + 0.5, 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    # unknown band: an annulus around the edge holding `band` of the pixels
    order = np.sort(np.abs(r - 0.7).ravel())
    width = order[int(band * r.size)]
    trimap = np.where(r < 0.7, 255, 0).astype(np.uint8)
    trimap[np.abs(r - 0.7) < width] = 128
    return (pred * 255 + 0.5).astype(np.uint8), (gt * 255 + 0.5).astype(np.uint8), trimap


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p, g, t = case()
    report = {"image": "2048x2048", "unknown_fraction": float((t == 128).mean())}
    report["baseline_bare_sad_s"] = best_of(lambda: np.abs(p.astype(np.float64) - g)[t == 128].sum())
    for name in ("sad", "mse", "grad", "conn"):
        report[f"{name}_s"] = best_of(lambda fn=getattr(metrics, name): fn(p, g, t))
    report["all_four_s"] = sum(report[f"{n}_s"] for n in ("sad", "mse", "grad", "conn"))
    report["evaluate_all_seven_s"] = best_of(lambda: metrics.evaluate(p, g, t))
    report["all_four_vs_bare_sad"] = report["all_four_s"] / report["baseline_bare_sad_s"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
