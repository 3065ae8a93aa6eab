"""Latency and peak memory per photo size, torch vs onnx backends, against the peers.

Each (method, size) runs in its own process so that peak RSS is its own. The whole grid runs
``--rounds`` times, one round after the other, so that a slow spell of the machine hits every
method alike; a cell's time is the median over rounds of each round's median of ``--repeats``,
its peak RSS the largest. Photos are the public-domain astronaut scaled to each size. Writes
bench/results/speed.json and speed.md.
Usage: python bench/speed.py [--sizes 0.5 1 2 4 12 24] [--repeats 3] [--rounds 3]
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


def median_seconds(run, repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


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
    return {"seconds": median_seconds(lambda: run(image), repeats),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 1.7, 2, 4, 12, 24])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "MP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], float(args.one[1]), args.repeats)))
        return
    runs: dict[tuple[float, str], list[dict]] = {}
    for _ in range(args.rounds):
        for mp in args.sizes:
            for method in args.methods:
                res = subprocess.run([sys.executable, __file__, "--one", method, str(mp),
                                      "--repeats", str(args.repeats)], capture_output=True, text=True)
                run = ({"error": res.stderr.strip()[-300:]} if res.returncode else
                       json.loads(res.stdout.strip().splitlines()[-1]))
                runs.setdefault((mp, method), []).append(run)
                print(mp, method, run, file=sys.stderr)
    table: dict[str, dict[str, dict]] = {}
    for (mp, method), results in runs.items():
        failed = [r for r in results if "error" in r]
        table.setdefault(str(mp), {})[method] = failed[0] if failed else {
            "seconds": float(np.median([r["seconds"] for r in results])),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "seconds_per_round": [r["seconds"] for r in results]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(table, indent=2))
    md = markdown(table, args.methods)
    (RESULTS / "speed.md").write_text(md)
    print(md)


def markdown(table: dict, methods: list[str]) -> str:
    """The README table: time and peak RSS per method and size, and RVM's time over shm's."""
    lines = ["| MP | " + " | ".join(methods) + " | RVM time / shm-torch time |",
             "|" + "---|" * (len(methods) + 2)]
    for mp, row in table.items():
        cells = ["failed" if "error" in row[m] else
                 f"{row[m]['seconds']:.3f} s, {row[m]['peak_rss_mib']:.0f} MiB" for m in methods]
        ok = all("error" not in row.get(m, {"error": 1}) for m in ("RVM", "shm-torch"))
        ratio = f"{row['RVM']['seconds'] / row['shm-torch']['seconds']:.2f}" if ok else "-"
        lines.append(f"| {mp} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
