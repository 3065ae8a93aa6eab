"""Training throughput on this CPU: samples/s of an optimiser step per stage and setting, and of
sample preparation, measured interleaved in one run (baseline: fp32, contiguous tensors).

Settings: fp32; channels_last; bf16 autocast; torch.compile; freeze4 (the T-Net's first four
encoder blocks frozen, ``shm train --freeze 4``; T-Net only). Stages: 'tnet' (the T-Net on
384-px crops, the --augment run's shape) and 'mnet' (the M-Net on 288-px crops with trimap
probabilities). Data: samples/s of PeopleMatting with and without scene augmentation.
Writes bench/results/train_throughput.json and .md.

Usage: python bench/train_throughput.py [--rounds 2] [--steps 3] [--batch 8] [--compile]
    [--settings fp32,freeze4] [--stages tnet]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from shm.config import build_model
from shm.data.augment import AugmentConfig
from shm.data.people import PeopleMatting, SampleSpec
from shm.models.fusion import fuse
from shm.paths import default_data_root
from shm.training.losses import trimap_loss

RESULTS = Path(__file__).resolve().parent / "results"


def step_fn(stage: str, batch: int, setting: str):
    """A callable running one optimiser step of ``stage`` under ``setting``."""
    torch.manual_seed(0)
    model = build_model("mobile")
    net = model.tnet if stage == "tnet" else model.mnet
    if setting == "freeze4":
        net.encoder.freeze(4)
    crop = 384 if stage == "tnet" else 288
    x = torch.rand(batch, 3, crop, crop)
    target = torch.randint(0, 3, (batch, crop, crop))
    probs = torch.softmax(torch.randn(batch, 3, crop, crop), 1)
    if setting == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x, probs = (t.contiguous(memory_format=torch.channels_last) for t in (x, probs))
    run = torch.compile(net) if setting == "compile" else net
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-4)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=setting == "bf16"):
            if stage == "tnet":
                loss = trimap_loss(run(x).float(), target)
            else:
                loss = (fuse(probs, run(x, probs).float()) - 0.5).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def data_rate(augment: bool, n: int) -> float:
    """Samples/s of 'tnet' samples (384 px) from the real training set, one process."""
    spec = SampleSpec("tnet", 384, (380, 515), real=0.5,
                      augment=AugmentConfig() if augment else None)
    data = PeopleMatting(default_data_root(), "train", spec, seed=0)
    data[0]
    start = time.perf_counter()
    for i in range(1, n + 1):
        data[i * 97 % len(data)]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--settings", default="fp32,channels_last,bf16,freeze4",
                        help="comma-separated; fp32 is always measured (the baseline)")
    parser.add_argument("--stages", default="tnet,mnet")
    parser.add_argument("--name", default="train_throughput", help="results file name")
    args = parser.parse_args()
    settings = ["fp32"] + [k for k in args.settings.split(",") if k != "fp32"]
    settings += ["compile"] if args.compile else []
    steps = {(s, k): step_fn(s, args.batch, k) for s in args.stages.split(",") for k in settings
             if not (k == "freeze4" and s != "tnet")}
    for fn in steps.values():
        fn()  # warm-up (and compilation)
    times: dict = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, fn in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[key].append((time.perf_counter() - start) / args.steps)
    rates = {f"{s}/{k}": args.batch / float(np.median(t)) for (s, k), t in times.items()}
    data = {"plain": data_rate(False, 24), "augmented": data_rate(True, 24)}
    result = {"batch": args.batch, "samples_per_s": rates, "data_samples_per_s": data,
              "threads": torch.get_num_threads()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| stage | setting | samples/s | vs fp32 |", "|---|---|---|---|"]
    for key, rate in rates.items():
        stage, setting = key.split("/")
        lines.append(f"| {stage} | {setting} | {rate:.2f} | {rate / rates[stage + '/fp32']:.2f}x |")
    lines += ["", f"Sample preparation, one process: plain {data['plain']:.1f} samples/s, "
              f"scene-augmented {data['augmented']:.1f} samples/s."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
