"""The three training stages, with atomic checkpoints, exact resume and torchrun (DDP) support.

Stages: 'tnet' (cross-entropy on trimaps), 'mnet' (M-Net on ground-truth trimaps, loss L_p on
the fused alpha), 'refine' (M-Net on the frozen T-Net's own trimaps, each net at its inference
scale, loss L_p), 'end2end' (both nets as 'refine' cuts them, L_p + 0.01 L_t, the loss flowing
through the fusion into both).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from shm import metrics
from shm import trimap as tri
from shm.config import build_model, get_config
from shm.data.augment import AugmentConfig
from shm.data.people import PeopleMatting, SampleSpec
from shm.fileio import atomic_write
from shm.models.fusion import fuse
from shm.models.shm import flip_averaged
from shm.pretrained import load_matching_parts, load_pretrained, save_pretrained
from shm.training.losses import prediction_loss, total_loss, trimap_loss

STAGES = ("tnet", "mnet", "end2end", "refine")
CHECKPOINT = "checkpoint.pt"
SNAPSHOTS = "snapshots"


@dataclass
class TrainConfig:
    """One stage's run.

    init: a folder of weights from the previous stage; None starts from ImageNet.
    model: a preset. Without init, the model to train; with init, None keeps init's architecture,
    and a preset takes from init only the parts (T-Net, M-Net) whose architecture matches.
    """

    stage: str
    data: Path
    out: Path
    model: str | None = None
    init: Path | None = None
    steps: int = 1000
    batch_size: int = 8
    crop: int = 288
    lr: float = 5e-4
    checkpoint_every: int = 50
    # also keep the weights every N steps as out/snapshots/step-NNNNN (0: never), for
    # ``shm average`` (model soups, model card)
    snapshot_every: int = 0
    val_images: int = 16
    seed: int = 0
    workers: int = 1
    real: float = 0.0  # fraction of samples on the photo's own background
    # Unknown-band radius of the trimaps, a range of fractions of the short side. (Widening it
    # for the 'mnet' stage was tried and scored worse than the 'refine' stage; model card.)
    band: tuple[float, float] = (0.005, 0.02)
    flip: bool = True  # 'refine': T-Net trimaps averaged with the mirror image's, as at inference
    # 'tnet': scenes with more people, occluders, blur, camera effects (shm.data.augment), the
    # person at long side ``tnet_long_side`` +-15% (the inference scale) or small; 'refine' and
    # 'end2end': small people, head and person blur and camera effects on the whole photo
    augment: bool = False
    camera: float = 0.85  # with augment: share of samples through the camera chain
    dark: float = 0.0  # with augment: share of samples with part of the person darkened
    prints: float = 0.0  # with augment: share with part of the person painted with a photo
    bystanders: float = 0.0  # with augment: share with people out of focus behind, background
    # share of samples framed as portraits and half-bodies (SampleSpec.portrait), every stage
    portrait: float = 0.0
    close_up: float = 0.0  # share of the portrait frames that are close-ups (SampleSpec.close_up)
    balance: bool = True  # draw each source ('ccp' street photos, the others) equally often
    clip: float = 5.0  # gradient-norm clipping
    # 'tnet' and 'end2end': leading blocks of the T-Net's encoder left untrained (their backward
    # pass skipped; ``MobileNetV2Encoder.freeze``), a throughput lever
    freeze: int = 0
    # 'refine' and 'end2end': the T-Net's input long side in training samples (0: the model's
    # inference side). Lower for most steps, then the model's for the last (FixRes, Touvron et
    # al., NeurIPS 2019), a throughput lever; validation always uses the model's side.
    view: int = 0

    def spec(self, tnet_long_side: int) -> SampleSpec:
        """How samples are cut; tnet_long_side: the model's, for the 'refine' stage's view."""
        augment = (AugmentConfig(photometric=self.camera, dark=self.dark, prints=self.prints,
                                 bystanders=self.bystanders) if self.augment else None)
        if self.augment and self.stage == "tnet":
            side = (round(tnet_long_side * 0.85), round(tnet_long_side * 1.15))
            return SampleSpec("tnet", self.crop, long_side=side, real=self.real,
                              trimap_width=self.band, portrait=self.portrait,
                              close_up=self.close_up, augment=augment)
        mode = "refine" if self.stage == "end2end" else self.stage
        return SampleSpec(mode, self.crop, real=self.real, trimap_width=self.band,
                          view=tnet_long_side, portrait=self.portrait, close_up=self.close_up,
                          augment=augment)


def stage_loss(net: torch.nn.Module, stage: str, batch: dict[str, torch.Tensor],
               tnet: torch.nn.Module | None = None,
               flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch and the predicted alpha (B, 1, H, W) in [0, 1].

    net is the part the stage trains (possibly DDP-wrapped): the T-Net for 'tnet', the M-Net
    for 'mnet' and 'refine', an ``EndToEnd`` for 'end2end'. tnet: the frozen T-Net ('refine'),
    run on the mirror image too if ``flip``.
    """
    if stage == "end2end":
        alpha, logits = net(batch["view"], batch["geometry"], batch["image"])
        classes = [batch["view_trimap"][i:i + 1, :lg.shape[2], :lg.shape[3]]
                   for i, lg in enumerate(logits)]
        return total_loss(alpha, batch, logits, classes), alpha
    if stage == "refine":
        probs = crop_trimap_probs(tnet, batch["view"], batch["geometry"], batch["image"].shape[-1],
                                  flip)
        alpha = fuse(probs, net(batch["image"], probs))
        return prediction_loss(alpha, batch), alpha
    if stage == "tnet":
        logits = net(batch["image"])
        probs = logits.softmax(1)
        alpha = probs[:, tri.FOREGROUND:tri.FOREGROUND + 1] + 0.5 * probs[:, tri.UNKNOWN:tri.UNKNOWN + 1]
        return trimap_loss(logits, batch["trimap"]), alpha
    probs = F.one_hot(batch["trimap"], 3).permute(0, 3, 1, 2).float()
    alpha = fuse(probs, net(batch["image"], probs))
    return prediction_loss(alpha, batch), alpha


class EndToEnd(torch.nn.Module):
    """The whole model as the 'end2end' stage trains it, each net at its inference scale.

    forward(view (B, 3, V, V), geometry (B, 6), image (B, 3, C, C)), with view and geometry
    as ``PeopleMatting`` gives them in mode 'refine', returns the fused alpha (B, 1, C, C) in
    [0, 1] and the T-Net's logits on each whole view, a list of (1, 3, h_i, w_i). The T-Net
    runs on one view at a time, as inference does, so its batch norms stay frozen
    (``train_mode``); gradients flow from the fused alpha into both nets.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, view: torch.Tensor, geometry: torch.Tensor, image: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        probs, logits = _crop_probs(self.model.tnet, view, geometry, image.shape[-1])
        return fuse(probs, self.model.mnet(image, probs)), logits


@torch.no_grad()
def crop_trimap_probs(tnet: torch.nn.Module, view: torch.Tensor, geometry: torch.Tensor,
                      crop: int, flip: bool = False) -> torch.Tensor:
    """The T-Net's trimap probabilities over each sample's crop, computed as inference does
    (with ``flip``, averaged with the mirror image's: ``shm.models.shm.flip_averaged``).

    view: (B, 3, V, V) whole images at T-Net size; geometry: (B, 6) as ``PeopleMatting`` gives.
    The T-Net runs in eval mode, one image at a time (``_crop_probs``).
    Returns (B, 3, crop, crop) softmax probabilities.
    """
    was_training = tnet.training
    tnet.eval()
    probs, _ = _crop_probs(flip_averaged(tnet) if flip else tnet, view, geometry, crop)
    tnet.train(was_training)
    return probs


def _crop_probs(tnet: Callable[[torch.Tensor], torch.Tensor], view: torch.Tensor,
                geometry: torch.Tensor, crop: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``tnet`` on each sample's view (its top-left h x w), the logits upsampled to the whole
    image's size and cut to the crop; outside the image the crop is background.
    Returns (B, 3, crop, crop) softmax probabilities and the list of view logits (1, 3, h, w)."""
    out = torch.zeros(len(view), 3, crop, crop, device=view.device)
    out[:, tri.BACKGROUND] = 1
    logits = []
    for i, (th, tw, h, w, top, left) in enumerate(geometry.tolist()):
        logits.append(tnet(view[i:i + 1, :, :th, :tw]))
        whole = F.interpolate(logits[-1], (h, w), mode="bilinear", align_corners=False)
        r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + crop, h), min(left + crop, w)
        out[i, :, r0 - top:r1 - top, c0 - left:c1 - left] = whole[0, :, r0:r1, c0:c1].softmax(0)
    return out, logits


def trained_part(model: torch.nn.Module, stage: str) -> torch.nn.Module:
    """The sub-network a stage optimises (for 'end2end', the whole model in an ``EndToEnd``)."""
    if stage == "end2end":
        return EndToEnd(model)
    return {"tnet": model.tnet, "mnet": model.mnet, "refine": model.mnet}[stage]


def train_mode(model: torch.nn.Module, stage: str) -> None:
    """Put ``model`` in training mode for ``stage``: all of it, except the T-Net's batch norms
    in 'end2end', which sees one view at a time."""
    model.train()
    if stage == "end2end":
        model.tnet.eval()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_step: Callable[[int, float], None] | None = None) -> dict:
    """Run one stage to ``cfg.steps`` steps; write checkpoints, log and final weights to ``cfg.out``.

    resume: continue from ``cfg.out/checkpoint.pt`` exactly where it stopped.
    on_step(step, loss) is called after every optimiser step. Returns the last validation metrics.
    """
    if cfg.stage not in STAGES:
        raise ValueError(f"Unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}.")
    if cfg.batch_size < 2:
        raise ValueError("Batch size must be at least 2 per process (batch norm needs it).")
    if cfg.augment and cfg.stage == "mnet":
        raise ValueError("--augment is for the tnet, refine and end2end stages.")
    if cfg.freeze and cfg.stage not in ("tnet", "end2end"):
        raise ValueError("--freeze is for the stages that train the T-Net: tnet and end2end.")
    if cfg.view and cfg.stage not in ("refine", "end2end"):
        raise ValueError("--view is for the stages that run the T-Net on whole photos: refine "
                         "and end2end.")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                          if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    model, loaded = _initial_model(cfg)
    model = model.to(device)
    if cfg.freeze:
        if not hasattr(model.tnet.encoder, "freeze"):
            raise ValueError("--freeze works with the MobileNetV2 and EfficientNet-Lite0 T-Nets only; "
                             "drop it for this model.")
        model.tnet.encoder.freeze(cfg.freeze)
    part = trained_part(model, cfg.stage)
    opt = torch.optim.AdamW([p for p in part.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=1e-4)
    warmup = min(50, cfg.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    net = (torch.nn.parallel.DistributedDataParallel(part, find_unused_parameters=True)
           if world > 1 else part)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if rank == 0 and not resume:
        _log(cfg.out, {"init": str(cfg.init), "parts_from_init": loaded})
    step = 0
    ckpt_path = cfg.out / CHECKPOINT
    for stale in cfg.out.glob(f".{CHECKPOINT}.*.tmp"):  # left by a kill during a write
        stale.unlink(missing_ok=True)
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = state["step"]
    data = PeopleMatting(cfg.data, "train", cfg.spec(cfg.view or model.tnet_long_side),
                         seed=cfg.seed)
    per_epoch = len(data) // (cfg.batch_size * world)
    if per_epoch == 0:
        raise ValueError(f"Batch size {cfg.batch_size} exceeds the {len(data)} training images.")
    val = _validation_batches(cfg, model.tnet_long_side, device)
    result: dict = {}
    bar = _progress(progress and rank == 0)
    task = bar.add_task(f"stage {cfg.stage}", total=cfg.steps, completed=step, loss=float("nan"))
    with bar:
        while step < cfg.steps:
            epoch, offset = divmod(step, per_epoch)
            order = _epoch_order(data, cfg, epoch)[rank::world]
            batches = [order[i * cfg.batch_size:(i + 1) * cfg.batch_size].tolist()
                       for i in range(offset, min(per_epoch, offset + cfg.steps - step))]
            data.set_epoch(epoch)
            # forkserver: forking a parent whose OpenMP pool is running (numba, when the
            # foreground cache is being filled) kills the workers.
            loader = torch.utils.data.DataLoader(
                data, batch_sampler=batches, num_workers=cfg.workers,
                multiprocessing_context="forkserver" if cfg.workers else None)
            train_mode(model, cfg.stage)
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                loss, _ = stage_loss(net, cfg.stage, batch, model.tnet, cfg.flip)
                opt.zero_grad(set_to_none=True)
                if _all_finite(loss, world):
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(part.parameters(), cfg.clip)
                    opt.step()
                elif rank == 0:  # one bad sample must not poison the weights
                    _log(cfg.out, {"step": step + 1, "skipped": "non-finite loss"})
                sched.step()
                step += 1
                bar.update(task, completed=step, loss=loss.item())
                if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                    _save_checkpoint(ckpt_path, model, opt, sched, step)
                    _log(cfg.out, {"step": step, "loss": loss.item()})
                if rank == 0 and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                    save_pretrained(model, cfg.out / SNAPSHOTS / f"step-{step:05d}")
                if on_step:
                    on_step(step, loss.item())
            if rank == 0 and (step % per_epoch == 0 or step == cfg.steps):
                result = validate(model, cfg.stage, val, cfg.flip)
                _log(cfg.out, {"step": step, "epoch": epoch, "val": result})
    if rank == 0:
        save_pretrained(model, cfg.out)
        (cfg.out / "train_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))
    return result


def _all_finite(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite on every process (all skip a step together under DDP)."""
    finite = torch.isfinite(loss.detach()).float()
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def _epoch_order(data: PeopleMatting, cfg: TrainConfig, epoch: int) -> np.ndarray:
    """Indices of one epoch: a permutation, or with ``cfg.balance`` a draw (with replacement)
    that gives each source an equal share."""
    rng = np.random.default_rng([cfg.seed, epoch])
    if not cfg.balance:
        return rng.permutation(len(data))
    return rng.choice(len(data), size=len(data), p=data.source_weights())


def _initial_model(cfg: TrainConfig) -> tuple[torch.nn.Module, list[str]]:
    """The model a stage starts from, and the parts taken from ``cfg.init``."""
    if cfg.init and cfg.model is None:
        return load_pretrained(cfg.init).train(), ["tnet", "mnet"]
    config = get_config(cfg.model or "mobile")
    model = build_model(config, pretrained_backbone=True)
    return model, load_matching_parts(model, cfg.init) if cfg.init else []


@torch.inference_mode()
def validate(model: torch.nn.Module, stage: str, batches: list[dict[str, torch.Tensor]],
             flip: bool = False) -> dict:
    """Mean of ``shm.metrics.evaluate`` over validation batches (GT trimaps give the unknown
    band); flip as in ``stage_loss``."""
    was_training = model.training
    model.eval()
    rows = []
    for batch in batches:
        _, alpha = stage_loss(trained_part(model, stage), stage, batch, model.tnet, flip)
        for i in range(alpha.shape[0]):
            gt_trimap = tri.to_uint8(batch["trimap"][i].cpu().numpy())
            rows.append(metrics.evaluate(alpha[i, 0].clamp(0, 1).cpu().numpy(),
                                         batch["alpha"][i, 0].cpu().numpy(), gt_trimap))
    model.train(was_training)
    return {k: float(np.nanmean([r[k] for r in rows])) for k in metrics.KEYS}


def _validation_batches(cfg: TrainConfig, tnet_long_side: int, device: torch.device
                        ) -> list[dict[str, torch.Tensor]]:
    # clean photos in their own framing, comparable across runs
    spec = replace(cfg.spec(tnet_long_side), augment=None, portrait=0.0)
    data = PeopleMatting(cfg.data, "val", spec, seed=cfg.seed + 1)
    n = min(cfg.val_images, len(data))
    items = [data[i] for i in range(n)]
    return [{k: torch.stack([it[k] for it in items[j:j + 4]]).to(device) for k in items[0]}
            for j in range(0, n, 4)]


def _save_checkpoint(path: Path, model, opt, sched, step: int) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "step": step}
    atomic_write(path, lambda p: torch.save(state, p))


def _log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                    disable=not enabled)
