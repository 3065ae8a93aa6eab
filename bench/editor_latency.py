"""Editor stroke latency on a 1 MP photo, against recomputing the whole image (same run).

Writes bench/results/editor.json and bench/results/editor.md. Usage:
python bench/editor_latency.py [--weights DIR] [--strokes N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from shm.editor.session import EditSession
from shm.inference.predictor import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def photo_1mp() -> np.ndarray:
    from skimage import data

    big = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC)
    return np.asarray(big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--strokes", type=int, default=30)
    args = parser.parse_args()
    model = load_model(args.weights)
    image = photo_1mp()
    start = time.perf_counter()
    session = EditSession(model, image)
    full_ms = (time.perf_counter() - start) * 1000
    rng = np.random.default_rng(0)
    alpha = session.matte().alpha
    edge = np.argwhere((alpha > 0.1) & (alpha < 0.9))
    timings = {"keep": [], "erase": [], "refine": []}
    for i in range(args.strokes):
        tool = ("keep", "erase", "refine")[i % 3]
        y, x = edge[rng.integers(len(edge))]
        angle = rng.uniform(0, np.pi)
        t = np.linspace(-60, 60, 12)
        pts = np.stack([x + t * np.cos(angle), y + t * np.sin(angle)], 1).tolist()
        start = time.perf_counter()
        session.stroke(tool, 30, pts)
        timings[tool].append((time.perf_counter() - start) * 1000)
    undo = []
    for _ in range(5):
        start = time.perf_counter()
        session.undo()
        undo.append((time.perf_counter() - start) * 1000)
    every = [ms for values in timings.values() for ms in values]
    report = {"image": "astronaut upscaled to 1024x1024 (1.05 MP)", "strokes": len(every),
              "brush": "30 px, 120 px long, on the subject's edge",
              "full_recompute_ms": full_ms,
              "stroke_ms_median": float(np.median(every)),
              "stroke_ms_p90": float(np.percentile(every, 90)),
              "stroke_ms_max": float(np.max(every)),
              "by_tool_median_ms": {k: float(np.median(v)) for k, v in timings.items()},
              "undo_ms_median": float(np.median(undo))}
    report["speedup_vs_full_recompute"] = full_ms / report["stroke_ms_median"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "editor.json").write_text(json.dumps(report, indent=2))
    md = (f"| 1 MP photo, 2 CPU cores | median | p90 | max |\n|---|---|---|---|\n"
          f"| stroke (keep/erase/refine, 30 px brush) | {report['stroke_ms_median']:.0f} ms | "
          f"{report['stroke_ms_p90']:.0f} ms | {report['stroke_ms_max']:.0f} ms |\n"
          f"| undo | {report['undo_ms_median']:.1f} ms | | |\n"
          f"| baseline: whole automatic pass | {full_ms:.0f} ms | | |\n\n"
          f"A stroke is {report['speedup_vs_full_recompute']:.1f}x faster than recomputing the "
          f"whole image.\n")
    (RESULTS / "editor.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
