"""Fuzz the image loader: seeded mutations of small JPEG, PNG, WebP and TIFF files (tests/fuzz.py)
through ``shm.inference.images.load_image``, which must raise ImageError or return (H, W, 3)
uint8, nothing else.

Baseline in the same run: the same mutants through bare Pillow (``Image.open(...).convert("RGB")``),
counting the exceptions a caller catching only OSError would miss, and the load time of the
unmutated files. Writes bench/results/fuzz.json and fuzz.md.
Usage: python bench/fuzz_images.py [--count N] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fuzz, the one place the mutations are defined
RESULTS = ROOT / "bench" / "results"


def through_loader(mutants: list[tuple[str, bytes]]) -> dict:
    from shm.inference.images import ImageError, load_image

    outcomes: Counter = Counter()
    unhandled = []
    start = time.perf_counter()
    for i, (fmt, data) in enumerate(mutants):
        try:
            out = load_image(data)
        except ImageError as e:
            cause = e.__cause__
            outcomes["ImageError, refused format or size" if cause is None
                     else f"ImageError from {type(cause).__name__}"] += 1
            continue
        except Exception as e:
            unhandled.append(f"mutant {i} of a {fmt}: {type(e).__name__}: {e}"[:200])
            continue
        if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
            unhandled.append(f"mutant {i} of a {fmt}: loaded as {out.shape} {out.dtype}")
        else:
            outcomes["loaded"] += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "outcomes": dict(outcomes.most_common()),
            "unhandled": len(unhandled), "unhandled_examples": unhandled[:10]}


def through_pillow(mutants: list[tuple[str, bytes]]) -> dict:
    raised: Counter = Counter()
    start = time.perf_counter()
    for _, data in mutants:
        try:
            Image.open(io.BytesIO(data)).convert("RGB")
        except OSError:
            raised["OSError"] += 1
        except Exception as e:
            raised[type(e).__name__] += 1
    missed = sum(n for kind, n in raised.items() if kind != "OSError")
    return {"seconds": time.perf_counter() - start, "raised": dict(raised.most_common()),
            "not_oserror": missed}


def main() -> None:
    from tests.fuzz import mutants, seed_files

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=55_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # corrupt EXIF, large images: Pillow warns, we count
    from shm.inference.images import load_image

    seeds = seed_files()
    start = time.perf_counter()
    for _ in range(20):
        for _, data in seeds:
            load_image(data)
    clean_ms = (time.perf_counter() - start) / (20 * len(seeds)) * 1000
    cases = list(mutants(args.count, args.seed))
    loader = through_loader(cases)
    pillow = through_pillow(cases)
    mutant_ms = loader["seconds"] / args.count * 1000
    report = {"count": args.count, "seed": args.seed, "seed_files": len(seeds),
              "loader": loader, "bare_pillow": pillow, "clean_load_ms": clean_ms,
              "mutant_load_ms": mutant_ms, "mutant_vs_clean": mutant_ms / clean_ms}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(report, indent=2))
    rows = "\n".join(f"| {k} | {v} |" for k, v in loader["outcomes"].items())
    md = (f"# Image loader fuzz\n\n{args.count} mutants of {len(seeds)} seed files (seed "
          f"{args.seed}) in {loader['seconds']:.1f} s: **{loader['unhandled']} unhandled** "
          f"exceptions through load_image; bare Pillow raised {pillow['not_oserror']} that are "
          f"not OSError.\nA mutant takes {mutant_ms:.2f} ms, {report['mutant_vs_clean']:.2f}x "
          f"the {clean_ms:.2f} ms of an unmutated file.\n\n| outcome | mutants |\n|---|---|\n"
          f"{rows}\n")
    (RESULTS / "fuzz.md").write_text(md)
    print(md)
    if loader["unhandled"]:
        print("\n".join(loader["unhandled_examples"]))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
