"""Latency and peak memory per photo size, torch vs onnx backends, against the peers.

Each (method, size) runs in its own process so that peak RSS is its own. Photos are the
public-domain astronaut scaled to each size. Writes bench/results/speed.json and speed.md.
Usage: python bench/speed.py [--sizes 0.5 1 2 4 12 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("shm-torch", "shm-onnx", "RVM", "MediaPipe", "U2-Netp")


def photo(megapixels: float) -> np.ndarray:
    from PIL import Image
    from skimage import data

    w = round((megapixels * 1e6 * 1.5) ** 0.5)  # 3:2 landscape
    h = round(w / 1.5)
    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BILINEAR))


def measure(method: str, megapixels: float, repeats: int) -> dict:
    """Run in a child process: load, warm up, time ``repeats`` runs; report peak RSS."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    image = photo(megapixels)
    if method.startswith("shm"):
        from shm.inference.predictor import load_model

        model = load_model(backend=method.split("-")[1])
        run = lambda im: model.predict(im).alpha  # noqa: E731
    else:
        import peers

        run = {"RVM": peers.RVM, "MediaPipe": peers.MediaPipeSelfie, "U2-Netp": peers.U2Netp}[method]()
    run(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return {"seconds": float(np.median(times)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 1.7, 2, 4, 12, 24])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "MP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], float(args.one[1]), args.repeats)))
        return
    table: dict[str, dict[str, dict]] = {}
    for mp in args.sizes:
        for method in args.methods:
            res = subprocess.run([sys.executable, __file__, "--one", method, str(mp),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True)
            if res.returncode:
                table.setdefault(str(mp), {})[method] = {"error": res.stderr.strip()[-300:]}
            else:
                table.setdefault(str(mp), {})[method] = json.loads(res.stdout.strip().splitlines()[-1])
            print(mp, method, table[str(mp)][method], file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(table, indent=2))
    head = "| MP | " + " | ".join(args.methods) + " | shm-torch vs RVM |"
    lines = [head, "|" + "---|" * (len(args.methods) + 2)]
    for mp, row in table.items():
        cells = []
        for m in args.methods:
            r = row[m]
            cells.append("failed" if "error" in r else
                         f"{r['seconds']:.3f} s, {r['peak_rss_mib']:.0f} MiB")
        ratio = ("-" if "error" in row.get("RVM", {"error": 1}) or "error" in row["shm-torch"]
                 else f"{row['RVM']['seconds'] / row['shm-torch']['seconds']:.2f}x faster")
        lines.append(f"| {mp} | " + " | ".join(cells) + f" | {ratio} |")
    (RESULTS / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
