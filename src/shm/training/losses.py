"""The SHM losses: L = L_p + 0.01 * L_t, with L_p = 0.5 * L_alpha + 0.5 * L_comp."""

from __future__ import annotations

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
    """L_p = 0.5 * L_alpha + 0.5 * L_comp."""
    return 0.5 * alpha_loss(alpha, batch["alpha"]) + 0.5 * composition_loss(
        alpha, batch["fg"], batch["bg"], batch["image"])


def trimap_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """L_t: cross-entropy of (B, 3, H, W) logits against (B, H, W) int64 class indices."""
    return F.cross_entropy(logits, classes)


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The end-to-end loss L_p + 0.01 * L_t on an ``SHM.forward`` output."""
    return prediction_loss(out["alpha"], batch) + 0.01 * trimap_loss(out["trimap_logits"],
                                                                     batch["trimap"])
