"""Training throughput on this CPU: samples/s of an optimiser step per stage and setting, and of
sample preparation, measured interleaved in one run (baseline: fp32, contiguous tensors).

Settings: fp32; channels_last; bf16 autocast; torch.compile; freeze4 (the T-Net's first four
encoder blocks frozen, ``shm train --freeze 4``; 'tnet' and 'end2end'); for 'end2end' also
view320 (the T-Net's view at long side 320 instead of 448: the low side of FixRes) and
crop448 (fewer, larger M-Net crops: 448 px at half the batch), and their joins with '+'
(freeze4+view320). Stages: 'tnet' (the T-Net on
384-px crops, the --augment run's shape), 'mnet' (the M-Net on 288-px crops with trimap
probabilities) and 'end2end' (``shm.training.trainer.stage_loss``: the T-Net on each 448-px
view, the M-Net on 320-px crops, the loss into both). The table gives samples/s and the
M-Net's crop pixels/s. Data: samples/s of PeopleMatting with and without scene augmentation.
Writes bench/results/NAME.json and .md.

Usage: python bench/train_throughput.py [--rounds 2] [--steps 3] [--batch 8] [--compile]
    [--settings fp32,freeze4] [--stages tnet,end2end] [--name train_throughput]
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
from shm.training.trainer import stage_loss, train_mode, trained_part

RESULTS = Path(__file__).resolve().parent / "results"


END2END_SETTINGS = ("fp32", "freeze4", "view320", "crop448")


def parts(setting: str) -> set[str]:
    """The settings joined in ``setting`` ('freeze4+view320' -> {'freeze4', 'view320'})."""
    return set(setting.split("+"))


def applies(stage: str, setting: str) -> bool:
    """Whether ``setting`` is measured for ``stage``."""
    if stage == "end2end":
        return parts(setting) <= set(END2END_SETTINGS)
    return setting in ("fp32", "channels_last", "bf16", "compile") or (
        setting == "freeze4" and stage == "tnet")


def crop_side(stage: str, setting: str) -> int:
    """The side of the crops the stage's trained net sees under ``setting`` (pixels)."""
    if stage == "end2end":
        return 448 if "crop448" in parts(setting) else 320
    return 384 if stage == "tnet" else 288


def batch_size(batch: int, setting: str) -> int:
    return max(1, batch // 2) if "crop448" in parts(setting) else batch


def optimiser_step(net: torch.nn.Module, loss_fn):
    """A callable running one AdamW step of ``net``'s trainable parameters on ``loss_fn()``."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-4)

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def end2end_step_fn(batch: int, setting: str):
    """One optimiser step of the 'end2end' stage on random views, crops and labels; ``setting``
    may join several with '+' (freeze4+view320)."""
    torch.manual_seed(0)
    joined = parts(setting)
    model = build_model("mobile")
    if "freeze4" in joined:
        model.tnet.encoder.freeze(4)
    view, crop, b = (320 if "view320" in joined else 448), crop_side("end2end", setting), \
        batch_size(batch, setting)
    side = round(view * 1.5)  # the whole image, the crop inside it
    data = {"view": torch.rand(b, 3, view, view),
            "geometry": torch.tensor([[view, view, side, side, 32, 32]] * b),
            "view_trimap": torch.randint(0, 3, (b, view, view)),
            **{k: torch.rand(b, 3, crop, crop) for k in ("image", "fg", "bg")},
            "alpha": torch.rand(b, 1, crop, crop)}
    net = trained_part(model, "end2end")
    train_mode(model, "end2end")
    return optimiser_step(net, lambda: stage_loss(net, "end2end", data)[0])


def step_fn(stage: str, batch: int, setting: str):
    """A callable running one optimiser step of ``stage`` under ``setting``."""
    if stage == "end2end":
        return end2end_step_fn(batch, setting)
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

    def loss() -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16, enabled=setting == "bf16"):
            if stage == "tnet":
                return trimap_loss(run(x).float(), target)
            return (fuse(probs, run(x, probs).float()) - 0.5).abs().mean()

    return optimiser_step(net, loss)


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
    parser.add_argument("--settings", default="fp32,channels_last,bf16,freeze4,view320,crop448",
                        help="comma-separated; fp32 is always measured (the baseline)")
    parser.add_argument("--stages", default="tnet,mnet,end2end")
    parser.add_argument("--name", default="train_throughput", help="results file name")
    args = parser.parse_args()
    settings = ["fp32"] + [k for k in args.settings.split(",") if k != "fp32"]
    settings += ["compile"] if args.compile else []
    steps = {(s, k): step_fn(s, args.batch, k) for s in args.stages.split(",") for k in settings
             if applies(s, k)}
    for fn in steps.values():
        fn()  # warm-up (and compilation)
    times: dict = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, fn in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[key].append((time.perf_counter() - start) / args.steps)
    rates = {f"{s}/{k}": batch_size(args.batch, k) / float(np.median(t))
             for (s, k), t in times.items()}
    data = {"plain": data_rate(False, 24), "augmented": data_rate(True, 24)}
    result = {"batch": args.batch, "samples_per_s": rates, "data_samples_per_s": data,
              "threads": torch.get_num_threads()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| stage | setting | samples/s | vs fp32 | crop Mpx/s | vs fp32 |",
             "|---|---|---|---|---|---|"]
    for key, rate in rates.items():
        stage, setting = key.split("/")
        mpx = rate * crop_side(stage, setting) ** 2 / 1e6
        base = rates[stage + "/fp32"] * crop_side(stage, "fp32") ** 2 / 1e6
        lines.append(f"| {stage} | {setting} | {rate:.2f} | {rate / rates[stage + '/fp32']:.2f}x "
                     f"| {mpx:.3f} | {mpx / base:.2f}x |")
    lines += ["", f"Sample preparation, one process: plain {data['plain']:.1f} samples/s, "
              f"scene-augmented {data['augmented']:.1f} samples/s."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
