"""The SHM paper's experiments on the val split of ../shared/data/people: segmentation + matting
pipelines against the fused model, and the ablation of its two nets.

Every Nth val photo (``--every``, default 6), in two framings: ``clean`` (the photo) and
``portrait`` (the head-and-torso close-up of ../shared/bench/robustness.py, imported from
there). Each photo and its reference alpha are resized to a long side of ``--side`` (default
512: the classical solvers are slow) and every method is scored at that size, over the whole
image: SAD, MSE, Grad and Conn of ``shm.metrics`` with every pixel unknown (SAD, Grad and Conn
/1000 as papers print them, MSE the mean over pixels).

Methods (rows):
- pipelines: a person mask, MediaPipe selfie's probability > 0.5 or the T-Net's argmax between
  person and background (F_s > B_s), turned into a trimap by erosion and dilation (the mask's
  edge widened by ``--band`` pixels on each side: ``shm.trimap.from_alpha`` of the binary mask),
  then pymatting's closed-form (cf), KNN (knn) and learning-based (lbdm) matting; a trimap with
  no foreground or no background, or a solver that does not converge, gives the mask itself
  (counted as ``fallbacks``);
- ablation: the T-Net alone (F_s + U_s / 2), the M-Net on the reference trimap (one-hot
  probabilities from ``shm.trimap.from_alpha`` of the reference, band 1% of the short side, as
  bench/quality.py; alpha = the trimap's known classes, the M-Net's alpha_r in its band) and
  the fused model (F_s + U_s * alpha_r, as ``Matter.predict``);
- MediaPipe's probability itself, for scale.

Prints one table per framing, with each method's SAD as a ratio of the fused model's in the
same run, and writes bench/results/baselines.json (means and per-photo values).
Usage: python bench/baselines.py [--weights DIR] [--every N] [--limit N] [--solvers cf,knn,lbdm]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import MediaPipeSelfie

from shm import metrics
from shm import trimap as tri
from shm.inference.predictor import Matter, load_model
from shm.inference.tiles import TiledCanvas
from shm.paths import default_data_root

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_BENCH = HERE.parent.parent / "shared" / "bench" / "robustness.py"
SOLVERS = ("cf", "knn", "lbdm")
MASKS = {"mediapipe": "MediaPipe mask", "tnet": "T-Net argmax mask"}
SOLVER_NAMES = {"cf": "closed-form", "knn": "KNN", "lbdm": "learning-based"}
ABLATION = {"tnet_alone": "T-Net alone (F + U/2)", "mnet_reference": "M-Net on reference trimap",
            "shm": "SHM fused (T-Net + M-Net)"}
METRICS = ("sad", "mse", "grad", "conn")
Alphas = dict[str, np.ndarray]


def portrait_crop() -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``portrait_crop(image, alpha)`` of ../shared/bench/robustness.py (loaded by path: the
    repo's bench/robustness.py has the same module name)."""
    if not SHARED_BENCH.is_file():
        sys.exit(f"{SHARED_BENCH} is missing; this bench needs ../shared beside the project.")
    spec = importlib.util.spec_from_file_location("shared_robustness", SHARED_BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.portrait_crop


def fit_long_side(image: np.ndarray, alpha: np.ndarray, side: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) uint8 alpha resized to a long side of ``side`` (area
    filter when shrinking; bicubic image and bilinear alpha when enlarging)."""
    scale = side / max(alpha.shape)
    size = (max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale)))
    shrink = scale < 1
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC),
            cv2.resize(alpha, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))


def mask_trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """(H, W) uint8 trimap in {0, 128, 255} from an (H, W) bool person mask: unknown where
    dilating and eroding the mask disagree (its edge widened by ``band`` pixels each side)."""
    return tri.from_alpha(mask.astype(np.uint8) * 255, band)


def solve(solver: str, image: np.ndarray, trimap: np.ndarray, mask: np.ndarray
          ) -> tuple[np.ndarray, bool]:
    """pymatting's ``solver`` on an (H, W, 3) uint8 image and (H, W) uint8 trimap: (H, W)
    float alpha in [0, 1] and False; or the (H, W) bool mask as alpha and True where the
    trimap lacks a known class or the solver does not converge."""
    import pymatting

    if not ((trimap == 0).any() and (trimap == 255).any()):
        return mask.astype(np.float32), True
    estimate = getattr(pymatting, f"estimate_alpha_{solver}")
    try:
        return np.clip(estimate(image / 255.0, trimap / 255.0), 0, 1), False
    except ValueError:  # conjugate gradients did not converge
        return mask.astype(np.float32), True


def canvas_probs(canvas: TiledCanvas) -> np.ndarray:
    """(3, H, W) float32 trimap probabilities (background, unknown, foreground) of a canvas,
    its padding dropped."""
    m = canvas.cfg.margin
    return canvas.probs[0, :, m:m + canvas.height, m:m + canvas.width].numpy().copy()


def one_hot_logits(trimap: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """A stand-in for the T-Net: maps any (1, 3, H, W) image to (1, 3, H, W) logits whose
    softmax is the one-hot of the (H, W) uint8 ``trimap`` (0 where a class is chosen, -1e4
    elsewhere, so the probabilities are exactly 0 and 1)."""
    classes = torch.from_numpy(tri.to_classes(trimap))
    one_hot = torch.nn.functional.one_hot(classes, 3).permute(2, 0, 1)[None]
    logits = torch.where(one_hot.bool(), 0.0, -1e4)
    return lambda image: logits.clone()


def shm_alphas(matter: Matter, image: np.ndarray, reference_trimap: np.ndarray
               ) -> tuple[Alphas, np.ndarray, dict[str, float]]:
    """The ablation's (H, W) float alphas in [0, 1] for an (H, W, 3) uint8 image, the T-Net's
    (H, W) bool person mask (F_s > B_s) and the seconds of each net's passes."""
    start = time.perf_counter()
    canvas = matter.canvas(image)
    tnet_seconds = time.perf_counter() - start
    bg, unknown, fg = canvas_probs(canvas)
    start = time.perf_counter()
    fused = matter.refine(canvas)
    mnet_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = TiledCanvas(image, one_hot_logits(reference_trimap), matter.tiles)
    on_reference = matter.refine(reference)
    alphas = {"tnet_alone": np.clip(fg + unknown / 2, 0, 1), "mnet_reference": on_reference,
              "shm": fused}
    seconds = {"tnet_alone": tnet_seconds, "shm": tnet_seconds + mnet_seconds,
               "mnet_reference": time.perf_counter() - start}
    return alphas, fg > bg, seconds


def pipeline_alphas(image: np.ndarray, masks: dict[str, np.ndarray], solvers: list[str],
                    band: int) -> tuple[Alphas, dict[str, float], list[str]]:
    """Each mask x solver's (H, W) alpha in [0, 1] for an (H, W, 3) uint8 image and (H, W)
    bool masks, the solvers' seconds, and the methods that fell back to their mask."""
    alphas, seconds, fallbacks = {}, {}, []
    for mask_name, mask in masks.items():
        trimap = mask_trimap(mask, band)
        for solver in solvers:
            key = f"{mask_name}+{solver}"
            start = time.perf_counter()
            alphas[key], fell_back = solve(solver, image, trimap, mask)
            seconds[key] = time.perf_counter() - start
            if fell_back:
                fallbacks.append(key)
    return alphas, seconds, fallbacks


def scores(alpha: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Whole-image SAD, MSE, Grad and Conn of an (H, W) float alpha in [0, 1] against an
    (H, W) uint8 reference (``shm.metrics`` with every pixel unknown)."""
    pred = metrics.to_uint8(alpha)
    everywhere = np.full(gt.shape, 128, np.uint8)
    return {k: getattr(metrics, k)(pred, gt, everywhere) for k in METRICS}


def evaluate_view(matter: Matter, mediapipe: MediaPipeSelfie, image: np.ndarray, gt: np.ndarray,
                  args: argparse.Namespace) -> tuple[dict, dict[str, float], list[str]]:
    """Scores, seconds and fallbacks of every method on one (H, W, 3) uint8 image with its
    (H, W) uint8 reference alpha."""
    reference = tri.from_alpha(gt, max(1, round(0.01 * min(gt.shape))))
    alphas, tnet_mask, seconds = shm_alphas(matter, image, reference)
    start = time.perf_counter()
    alphas["mediapipe"] = mediapipe(image)
    seconds["mediapipe"] = time.perf_counter() - start
    masks = {"mediapipe": alphas["mediapipe"] > 0.5, "tnet": tnet_mask}
    piped, solver_seconds, fallbacks = pipeline_alphas(image, masks, args.solvers, args.band)
    for key, value in solver_seconds.items():  # a pipeline's time includes its mask's
        mask_source = "mediapipe" if key.startswith("mediapipe") else "tnet_alone"
        seconds[key] = value + seconds[mask_source]
    alphas.update(piped)
    return {m: scores(a, gt) for m, a in alphas.items()}, seconds, fallbacks


def method_order(solvers: list[str]) -> list[str]:
    """Row order: MediaPipe, the pipelines, then the ablation."""
    return (["mediapipe"] + [f"{m}+{s}" for m in MASKS for s in solvers] + list(ABLATION))


def label(method: str) -> str:
    """A method's name in the tables."""
    if method == "mediapipe":
        return "MediaPipe probability (no matting)"
    if method in ABLATION:
        return ABLATION[method]
    mask, solver = method.split("+")
    return f"{MASKS[mask]} + {SOLVER_NAMES[solver]}"


def summarise(per_photo: dict, seconds: dict, methods: list[str]) -> dict:
    """Means over photos of each framing and method, with SAD as a ratio of the fused model's."""
    out = {}
    for view, rows in per_photo.items():
        means = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in METRICS}
                 for m in methods}
        for m in methods:
            means[m]["sad_vs_shm"] = means[m]["sad"] / means["shm"]["sad"]
            means[m]["seconds"] = float(np.mean(seconds[view][m]))
        out[view] = means
    return out


def table(summary: dict, methods: list[str]) -> str:
    """Markdown: one table per framing."""
    lines = []
    for view, means in summary.items():
        lines += [f"**{view}**", "", "| method | SAD | MSE | Grad | Conn | SAD vs SHM | s / photo |",
                  "|---|---|---|---|---|---|---|"]
        for m in methods:
            s = means[m]
            lines.append(f"| {label(m)} | {s['sad']:.2f} | {s['mse']:.4f} | {s['grad']:.2f} | "
                         f"{s['conn']:.2f} | {s['sad_vs_shm']:.2f}x | {s['seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None,
                        help="shm weights folder (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--every", type=int, default=6, help="every Nth val photo (default 6)")
    parser.add_argument("--limit", type=int, default=0, help="first N selected photos only")
    parser.add_argument("--side", type=int, default=512,
                        help="long side every method runs and is scored at (default 512)")
    parser.add_argument("--band", type=int, default=10,
                        help="pipelines' unknown band: pixels each side of the mask's edge")
    parser.add_argument("--solvers", default=",".join(SOLVERS),
                        help="comma-separated subset of cf,knn,lbdm")
    parser.add_argument("--out", type=Path, default=RESULTS / "baselines.json")
    args = parser.parse_args()
    args.solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not set(args.solvers) <= set(SOLVERS):
        parser.error(f"--solvers takes a subset of {','.join(SOLVERS)}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    people = args.data / "people"
    names = (people / "val.txt").read_text().split()[::args.every]
    names = names[:args.limit] if args.limit else names
    crop = portrait_crop()
    matter, mediapipe = load_model(args.weights), MediaPipeSelfie()
    methods = method_order(args.solvers)
    per_photo = {"clean": [], "portrait": []}
    seconds = {view: {m: [] for m in methods} for view in per_photo}
    fallbacks: dict[str, list[str]] = {}
    t0 = time.time()
    for i, name in enumerate(names):
        image = np.asarray(Image.open(people / "images" / f"{name}.jpg").convert("RGB"))
        gt = np.asarray(Image.open(people / "alphas" / f"{name}.png").convert("L"))
        views = {"clean": (image, gt), "portrait": crop(image, gt)}
        for view, (im, g) in views.items():
            im, g = fit_long_side(im, g, args.side)
            result, secs, fell_back = evaluate_view(matter, mediapipe, im, g, args)
            per_photo[view].append(result)
            for m in methods:
                seconds[view][m].append(secs[m])
            for m in fell_back:
                fallbacks.setdefault(f"{view}/{m}", []).append(name)
        print(f"{i + 1}/{len(names)} {name} {time.time() - t0:.0f}s", file=sys.stderr)
    summary = summarise(per_photo, seconds, methods)
    report = {"weights": str(args.weights or "shipped"), "every": args.every,
              "photos": len(names), "old": sum(not n.startswith("ccp_") for n in names),
              "side": args.side, "band": args.band, "solvers": args.solvers,
              "metrics": "whole image: SAD/1000, MSE (mean), Grad/1000, Conn/1000",
              "wall_seconds": time.time() - t0, "fallbacks": fallbacks, "methods": summary,
              "names": names, "per_photo": per_photo}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(names)} val photos (every {args.every}; {report['old']} old), long side "
          f"{args.side}, whole-image metrics, means over photos; wall {report['wall_seconds']:.0f} s.\n")
    print(table(summary, methods))
    if fallbacks:
        print("Fell back to the mask: " + "; ".join(f"{k} ({len(v)})" for k, v in fallbacks.items()))


if __name__ == "__main__":
    main()
