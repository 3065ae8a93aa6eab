"""Full-resolution M-Net on tiles that cover the unknown band only.

The image is split into square cells of ``tile`` pixels. The M-Net runs on a cell only when the
unknown probability there exceeds ``eps``, on a window of the cell plus ``margin`` pixels of
context on every side; only the cell's centre is kept. Elsewhere U_s < eps, and alpha_r is taken
as F_s / (F_s + B_s), so alpha there is within eps * |alpha_r - that| of the full result.
The margin covers everything the M-Net's output over a cell depends on (``context``; cells
and margins are multiples of 16, so cells sit on the M-Net's stride grid), so every cell it
runs on equals a whole-image pass up to float rounding. Where the cells are dense, one window
around a block of them costs fewer pixels than a window per cell and is used instead. Either
way the cost grows with the length of the outline, not with the image's area.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shm.models.fusion import fuse
from shm.trimap import BACKGROUND, FOREGROUND, UNKNOWN


@dataclass(frozen=True)
class TileConfig:
    tile: int = 96     # cell size, a multiple of 16
    margin: int = 80   # context on each side, a multiple of 16; exact if >= the M-Net's context
    # Cells whose max U_s is below eps skip the M-Net. The shipped M-Net, trained on the T-Net's
    # own trimaps, scores the same val SAD at eps 0.05, 0.2 and 0.5; 0.5 skips the most cells.
    eps: float = 0.5
    batch: int = 8     # windows per M-Net call
    max_window: int = 2_500_000  # pixels of the largest bounding-box window (bounds memory)


class TiledCanvas:
    """Padded copies of the image and trimap probabilities plus the M-Net output buffer.

    Built from an (H, W, 3) uint8 RGB image and ``trimap_logits``, which maps the image as
    (1, 3, H, W) float in [0, 1] to (1, 3, H, W) logits in trimap channel order (the T-Net).
    Holds ``image`` (1, 3, H', W') in [0, 1] and ``probs`` (1, 3, H', W') softmax, both padded
    by ``margin`` (replicated edges) and to whole cells; ``alpha_r`` (1, 1, H', W') holds the
    M-Net output of every cell run so far, F_s / (F_s + B_s) elsewhere. Each full-resolution
    array is made once, in place where possible: a 24 MP photo needs no unpadded float copy.
    """

    def __init__(self, image: np.ndarray,
                 trimap_logits: Callable[[torch.Tensor], torch.Tensor], cfg: TileConfig) -> None:
        if cfg.tile % 16 or cfg.margin % 16:
            raise ValueError("tile and margin must be multiples of 16.")
        self.cfg = cfg
        self.height, self.width = image.shape[:2]
        self.rows = -(-self.height // cfg.tile)
        self.cols = -(-self.width // cfg.tile)
        m = cfg.margin
        bottom, right = self.rows * cfg.tile - self.height + m, self.cols * cfg.tile - self.width + m
        padded = np.pad(image, ((m, bottom), (m, right), (0, 0)), mode="edge")
        self.image = torch.from_numpy(padded).permute(2, 0, 1)[None].float().div_(255)
        del padded
        logits = trimap_logits(self.image[..., m:m + self.height, m:m + self.width])
        self.probs = _softmax_(F.pad(logits, (m, right, m, bottom), mode="replicate"))
        del logits
        fg, bg = self.probs[:, FOREGROUND:FOREGROUND + 1], self.probs[:, BACKGROUND:BACKGROUND + 1]
        total = (fg + bg).clamp_min_(1e-6)
        self.alpha_r = torch.div(fg, total, out=total)

    def cells_needing_mnet(self, cells: set[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Cells (row, col), among ``cells`` (default: all), whose max U_s exceeds eps."""
        t, m = self.cfg.tile, self.cfg.margin
        unknown = self.probs[0, UNKNOWN, m:m + self.rows * t, m:m + self.cols * t]
        peak = unknown.reshape(self.rows, t, self.cols, t).amax(dim=(1, 3))
        wanted = (peak > self.cfg.eps).nonzero().tolist()
        return [(r, c) for r, c in wanted if cells is None or (r, c) in cells]

    def run(self, mnet: torch.nn.Module, cells: list[tuple[int, int]]) -> None:
        """Run the M-Net for ``cells`` and store their centres in ``alpha_r``.

        Cells are grouped in square blocks whose window fits ``max_window``; a block runs as one
        window around its cells' bounding box when that costs fewer pixels than a window per
        cell, else its cells join the batched per-cell windows. ``mnet(image, trimap_probs,
        crop)`` drops each window's margin, so it need not compute it.
        """
        t, m = self.cfg.tile, self.cfg.margin
        side = max(1, (math.isqrt(self.cfg.max_window) - 2 * m) // t)  # cells per block side
        blocks: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r, c in cells:
            blocks.setdefault((r // side, c // side), []).append((r, c))
        singles = []
        for group in blocks.values():
            rows, cols = [r for r, _ in group], [c for _, c in group]
            r0, c0 = min(rows), min(cols)
            box_h, box_w = (max(rows) - r0 + 1) * t + 2 * m, (max(cols) - c0 + 1) * t + 2 * m
            if box_h * box_w > min(len(group) * (t + 2 * m) ** 2, self.cfg.max_window):
                singles += group
                continue
            box = (..., slice(r0 * t, r0 * t + box_h), slice(c0 * t, c0 * t + box_w))
            out = mnet(_channels_last(self.image[box]), _channels_last(self.probs[box]), crop=m)
            for r, c in group:
                top, left = (r - r0) * t, (c - c0) * t
                self._store(r, c, out[..., top:top + t, left:left + t])
        size = t + 2 * m
        for i in range(0, len(singles), self.cfg.batch):
            group = singles[i:i + self.cfg.batch]
            imgs = torch.cat([self.image[..., r * t:r * t + size, c * t:c * t + size]
                              for r, c in group])
            probs = torch.cat([self.probs[..., r * t:r * t + size, c * t:c * t + size]
                               for r, c in group])
            out = mnet(_channels_last(imgs), _channels_last(probs), crop=m)
            for k, (r, c) in enumerate(group):
                self._store(r, c, out[k:k + 1])

    def _store(self, row: int, col: int, alpha_r: torch.Tensor) -> None:
        t, m = self.cfg.tile, self.cfg.margin
        self.alpha_r[..., m + row * t:m + (row + 1) * t, m + col * t:m + (col + 1) * t] = alpha_r

    def alpha(self, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Fused alpha (1, 1, H, W) in [0, 1]: F_s + U_s * alpha_r; only over the image pixels
        in ``box`` (top, left, bottom, right) if given."""
        m = self.cfg.margin
        top, left, bottom, right = box or (0, 0, self.height, self.width)
        crop = (..., slice(m + top, m + bottom), slice(m + left, m + right))
        return fuse(self.probs[crop], self.alpha_r[crop]).clamp(0, 1)

    def cells_in_box(self, top: float, left: float, bottom: float, right: float
                     ) -> set[tuple[int, int]]:
        """Cells whose window (cell plus margin) overlaps the box, in image pixels."""
        t, m = self.cfg.tile, self.cfg.margin
        r0, r1 = max(0, int((top - m) // t)), min(self.rows - 1, int((bottom + m) // t))
        c0, c1 = max(0, int((left - m) // t)), min(self.cols - 1, int((right + m) // t))
        return {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of (B, C, H, W) logits, computed in place and returned."""
    logits.sub_(logits.amax(1, keepdim=True)).exp_()
    return logits.div_(logits.sum(1, keepdim=True))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """A copy of an M-Net input window in channels-last layout, the layout of the weights of
    ``shm.models.fold.for_inference``: every layer then skips a layout conversion (1.7 MP
    photo: about 25% faster). The values, and so any M-Net's output, are unchanged."""
    return x.contiguous(memory_format=torch.channels_last)
