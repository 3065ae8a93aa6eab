"""The SHM losses: L = L_p + 0.01 * L_t, with L_p = 0.5 * L_alpha + 0.5 * L_comp."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-6


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)), a smooth L1."""
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


def alpha_loss(alpha: torch.Tensor, alpha_gt: torch.Tensor) -> torch.Tensor:
    """Charbonnier loss on alpha. Both (B, 1, H, W) in [0, 1]."""
    return charbonnier(alpha, alpha_gt)


def composition_loss(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor,
                     image: torch.Tensor) -> torch.Tensor:
    """Charbonnier loss between ``alpha*fg + (1-alpha)*bg`` and the image.

    alpha: (B, 1, H, W); fg, bg, image: (B, 3, H, W), all in [0, 1].
    """
    return charbonnier(alpha * fg + (1 - alpha) * bg, image)


def prediction_loss(alpha: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_p = 0.5 * L_alpha + 0.5 * L_comp. The composition's target is ``batch["composite"]``
    where the sample has one (the clean composite of an augmented image), else the image."""
    target = batch["composite"] if "composite" in batch else batch["image"]
    return 0.5 * alpha_loss(alpha, batch["alpha"]) + 0.5 * composition_loss(
        alpha, batch["fg"], batch["bg"], target)


def trimap_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """L_t: cross-entropy of (B, 3, H, W) logits against (B, H, W) int64 class indices."""
    return F.cross_entropy(logits, classes)


def total_loss(alpha: torch.Tensor, batch: dict[str, torch.Tensor],
               trimap_logits: Sequence[torch.Tensor], trimap_classes: Sequence[torch.Tensor]
               ) -> torch.Tensor:
    """The end-to-end loss L_p + 0.01 * L_t. alpha: (B, 1, H, W) fused; L_t is the mean over
    samples of ``trimap_loss`` of each pair (1, 3, h, w) logits, (1, h, w) classes (one pair
    per sample: the T-Net's views differ in size)."""
    l_t = torch.stack([trimap_loss(lg, c) for lg, c in zip(trimap_logits, trimap_classes,
                                                            strict=True)]).mean()
    return prediction_loss(alpha, batch) + 0.01 * l_t
