"""Batch throughput: images per second with 1 and 2 local workers and with Ray (2 actors) on
the same folder, in the same run; Ray's overhead per image is its time minus the local one's.

Photos: the public-domain astronaut at 1 MP with varied crops. Writes bench/results/batch.json.
Usage: python bench/batch_throughput.py [--images N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from shm.batch import run_batch

RESULTS = Path(__file__).resolve().parent / "results"


def make_inputs(folder: Path, count: int) -> None:
    from skimage import data

    big = Image.fromarray(data.astronaut()).resize((1224, 1224), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    for i in range(count):
        left, top = rng.integers(0, 200, size=2)
        big.crop((left, top, left + 1024, top + 1000)).save(folder / f"{i:04d}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args()
    report: dict = {"images": args.images, "megapixels": 1.02}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        make_inputs(src, args.images)
        for name, kw in (("local-1", {"workers": 1}), ("local-2", {"workers": 2}),
                         ("ray-2", {"workers": 2, "engine": "ray"})):
            summary = run_batch(src, Path(tmp) / name, "alpha", **kw)
            report[name] = {"images_per_second": summary.images_per_second,
                            "seconds": summary.seconds, "failed": summary.failed}
            print(name, report[name], flush=True)
    local, ray = report["local-2"], report["ray-2"]
    report["ray_overhead_ms_per_image"] = (ray["seconds"] - local["seconds"]) / args.images * 1000
    report["local2_vs_local1"] = local["images_per_second"] / report["local-1"]["images_per_second"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
