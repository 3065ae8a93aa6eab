"""Backbone trial (issue 18): the shipped model with its MobileNetV2 T-Net encoder against the
same config with EfficientNet-Lite0, timed on the CPU at one photo size.

Two jobs per arm, interleaved A/B (the order alternating every round, so a slow spell of the
machine hits both alike), median over rounds:
- the whole predictor path (``Matter.predict``: flip-averaged T-Net at its reduced size, tiled
  M-Net, fusion) on the astronaut scaled to ``--mp`` (3:2, as bench/speed.py);
- the T-Net alone, one forward pass at the size the predictor gives it.
Each job is timed twice: wall time on 2 torch threads (as shipped; other processes on a busy
machine make it noisy, their load stalls one thread and the other waits) and CPU time on 1
thread (the work done, which other processes barely change). The verdict uses the second.
Both arms have batch norms folded (``for_inference``) as ``load_model`` does. Arm A is the
shipped model; arm B swaps in a T-Net with a random Lite0 encoder (speed does not depend on the
weights). So that both give the M-Net the same cells to matte, each arm's T-Net runs and is
timed but the trimap handed on is the shipped model's (``ShippedTrimap``); a random T-Net would
mark every cell unknown and time an M-Net pass that no trained model makes.
Writes bench/results/backbone_speed.md.

Usage: python bench/backbone_speed.py [--mp 1.7] [--rounds 9] [--bound 1.15]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from speed import photo

from shm.config import build_model
from shm.inference.predictor import Matter
from shm.models.fold import for_inference
from shm.models.shm import reduced_size
from shm.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"


class ShippedTrimap(torch.nn.Module):
    """``model`` for ``Matter``: its own T-Net runs (and costs what it costs), but the logits
    handed on are ``reference``'s for the same image, computed once per image size."""

    def __init__(self, model: torch.nn.Module, reference: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.mnet, self.reference = model, model.mnet, reference
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    @property
    def mnet_context(self) -> int:
        return self.model.mnet_context

    def trimap_logits(self, image: torch.Tensor, flip: bool = False) -> torch.Tensor:
        self.model.trimap_logits(image, flip)
        key = tuple(image.shape)
        if key not in self.cache:
            self.cache[key] = self.reference.trimap_logits(image, flip)
        return self.cache[key]


def arms() -> dict[str, torch.nn.Module]:
    """'MobileNetV2': the shipped model; 'EfficientNet-Lite0': it with a random Lite0 T-Net."""
    shipped = load_pretrained(None)
    cfg = shipped.config
    lite0 = build_model(replace(cfg, tnet=replace(cfg.tnet, backbone="efficientnet_lite0")))
    other = copy.deepcopy(shipped)
    other.tnet = lite0.tnet
    return {"MobileNetV2": for_inference(shipped), "EfficientNet-Lite0": for_inference(other)}


# (torch threads, clock): how each job is timed; the second is the verdict's
SETTINGS = ((2, "wall"), (1, "CPU"))


def measure(jobs: dict[str, Callable[[str], object]], arms: list[str], rounds: int, threads: int,
            clock: str) -> dict[str, dict[str, float]]:
    """job -> arm -> median seconds over ``rounds`` interleaved rounds, after a warm-up."""
    torch.set_num_threads(threads)
    now = time.perf_counter if clock == "wall" else time.process_time
    times: dict[str, dict[str, list[float]]] = {j: {k: [] for k in arms} for j in jobs}
    with torch.inference_mode():
        for key in arms:
            for job in jobs.values():
                job(key)
        for r in range(rounds):
            for key in arms if r % 2 == 0 else arms[::-1]:
                for name, job in jobs.items():
                    start = now()
                    job(key)
                    times[name][key].append(now() - start)
    return {j: {k: float(np.median(t)) for k, t in per.items()} for j, per in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mp", type=float, default=1.7)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--bound", type=float, default=1.15, help="allowed time ratio B/A")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    models = arms()
    reference = models["MobileNetV2"]
    matters = {k: Matter(ShippedTrimap(m, reference)) for k, m in models.items()}
    image = photo(args.mp)
    th, tw = reduced_size(image.shape[:2], reference.tnet_long_side)
    small = torch.rand(1, 3, th, tw, generator=torch.Generator().manual_seed(0))
    jobs = {"predictor": lambda k: matters[k].predict(image),
            "T-Net forward": lambda k: models[k].tnet(small)}
    stats = {setting: measure(jobs, list(models), args.rounds, *setting) for setting in SETTINGS}
    load.append(os.getloadavg()[0])
    params = {k: sum(p.numel() for p in m.tnet.encoder.parameters()) for k, m in models.items()}
    md = markdown(stats, params, image.shape[:2], (th, tw), load, args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backbone_speed.md").write_text(md)
    print(md)


def markdown(stats: dict[tuple[int, str], dict[str, dict[str, float]]], params: dict[str, int],
             size: tuple[int, int], tnet_size: tuple[int, int], load: list[float],
             args: argparse.Namespace) -> str:
    """The table (median seconds per arm and their ratio) and the verdict against
    ``args.bound`` on the predictor's 1-thread CPU time."""
    a, b = "MobileNetV2", "EfficientNet-Lite0"
    h, w = size
    th, tw = tnet_size
    lines = [f"# T-Net backbone speed: {b} vs {a}", "",
             f"`python bench/backbone_speed.py --mp {args.mp} --rounds {args.rounds}`: CPU, "
             f"{w}x{h} photo ({h * w / 1e6:.2f} MP), batch norms folded, median of {args.rounds} "
             f"interleaved rounds. Predictor: `Matter.predict` (flip-averaged T-Net at {tw}x{th}, "
             "tiled M-Net on the shipped model's trimap, fusion); T-Net: one forward pass at "
             f"{tw}x{th}. Load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, on 2 "
             "cores.", "",
             f"| median seconds | {a} | {b} | {b} / {a} |", "|---|---|---|---|"]
    ratio = {}
    for (threads, clock), per_job in stats.items():
        for job, per in per_job.items():
            ratio[job, threads] = per[b] / per[a]
            lines.append(f"| {job}, {threads} thread{'s' * (threads > 1)}, {clock} time | "
                         f"{per[a]:.3f} | {per[b]:.3f} | {ratio[job, threads]:.2f} |")
    lines += [f"| encoder parameters (M) | {params[a] / 1e6:.2f} | {params[b] / 1e6:.2f} | "
              f"{params[b] / params[a]:.2f} |", ""]
    decisive, shipped = ratio["predictor", SETTINGS[1][0]], ratio["predictor", SETTINGS[0][0]]
    if decisive > args.bound:
        lines.append(f"**Verdict: {b} fails the bound.** Its predictor costs {decisive:.2f}x "
                     f"{a}'s CPU time at {args.mp} MP, more than the {args.bound}x allowed, so it "
                     "is rejected whatever its quality; no training trial.")
    else:
        lines.append(f"**Verdict: within the bound** ({decisive:.2f}x {a}'s predictor CPU time at "
                     f"{args.mp} MP; at most {args.bound}x allowed). Next step: a same-recipe, "
                     "same-wall-time training trial of `--model mobile-effnet-lite0` against "
                     f"{a}; keep it only if it wins on the whole quality table.")
    if (shipped > args.bound) != (decisive > args.bound):
        lines += ["", f"The 2-thread wall-time ratio ({shipped:.2f}) falls on the other side of "
                  "the bound: the machine was busy; confirm on a quiet one."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
