"""Probabilistic fusion of the T-Net trimap and the M-Net alpha."""

from __future__ import annotations

import torch

from shm.trimap import FOREGROUND, UNKNOWN


def fuse(trimap_probs: torch.Tensor, alpha_r: torch.Tensor) -> torch.Tensor:
    """alpha = F_s + U_s * alpha_r.

    trimap_probs: (B, 3, H, W) softmax probabilities in channel order (background, unknown,
    foreground). alpha_r: (B, 1, H, W) in [0, 1]. Returns (B, 1, H, W) in [0, 1].
    """
    fg = trimap_probs[:, FOREGROUND:FOREGROUND + 1]
    unknown = trimap_probs[:, UNKNOWN:UNKNOWN + 1]
    return fg + unknown * alpha_r
