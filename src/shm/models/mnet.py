"""M-Net: predicts the detailed alpha ``alpha_r`` from RGB plus the 3 trimap probabilities."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from shm.models.layers import ConvBNReLU, Normalize, crop_border


class _MNetBase(nn.Module):
    """Splits the 6-channel input and normalises the RGB part.

    ``context``: the smallest multiple of 16 such that the output over any cell aligned to the
    stride-16 grid depends only on inputs at most this far outside the cell, so tiles with
    this margin are exact (tiles and margins are multiples of 16). An output pixel's own reach
    depends on its position in the grid and is larger for some (89 px for FastMNet, against
    a context of 80); each is measured in ``tests/test_inference.py``.
    Every M-Net's ``forward`` takes ``crop``: pixels dropped from each side of alpha_r, for
    tiles whose margin is thrown away (even, less than half the smaller side).
    """

    stride = 16
    context = 80

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize()

    @classmethod
    def context_for(cls, widths: tuple[int, ...]) -> int:
        """``context`` of this M-Net built with ``widths``, without building it."""
        return cls.context

    def _prepare(self, image: torch.Tensor, trimap_probs: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != trimap_probs.shape[-2:]:
            raise ValueError("image and trimap probabilities must have the same height and width.")
        h, w = image.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"M-Net input of {h}x{w} is not a multiple of {self.stride}; "
                             "pad it first (shm.inference.tiles.pad_to_multiple).")
        return torch.cat([self.normalize(image), trimap_probs * 2 - 1], 1)

    @staticmethod
    def _check_crop(crop: int, x: torch.Tensor) -> None:
        if crop < 0 or crop % 2 or 2 * crop >= min(x.shape[-2:]):
            raise ValueError(f"crop must be even and less than half the M-Net input's "
                             f"smaller side ({min(x.shape[-2:])} px), got {crop}.")


class LightMNet(_MNetBase):
    """Light encoder-decoder with skip connections (4 downsamplings).

    forward(image (B, 3, H, W) in [0, 1], trimap_probs (B, 3, H, W) in [0, 1], channel order
    (background, unknown, foreground), crop: int = 0) -> alpha_r (B, 1, H - 2 crop,
    W - 2 crop) in [0, 1]. H and W must be multiples of 16.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64, 96)) -> None:
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.enc0 = nn.Sequential(ConvBNReLU(6, w0), ConvBNReLU(w0, w0))
        self.enc1 = nn.Sequential(ConvBNReLU(w0, w1, stride=2), ConvBNReLU(w1, w1))
        self.enc2 = nn.Sequential(ConvBNReLU(w1, w2, stride=2), ConvBNReLU(w2, w2))
        self.enc3 = nn.Sequential(ConvBNReLU(w2, w3, stride=2), ConvBNReLU(w3, w3))
        self.enc4 = nn.Sequential(ConvBNReLU(w3, w4, stride=2), ConvBNReLU(w4, w4))
        self.dec3 = ConvBNReLU(w4 + w3, w3)
        self.dec2 = ConvBNReLU(w3 + w2, w2)
        self.dec1 = ConvBNReLU(w2 + w1, w1)
        self.dec0 = nn.Sequential(ConvBNReLU(w1 + w0 + 6, w0), nn.Conv2d(w0, 1, 3, padding=1))

    def forward(self, image: torch.Tensor, trimap_probs: torch.Tensor,
                crop: int = 0) -> torch.Tensor:
        x = self._prepare(image, trimap_probs)
        self._check_crop(crop, x)
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = self.enc4(e3)
        d = self.dec3(torch.cat([_up2(d), e3], 1))
        d = self.dec2(torch.cat([_up2(d), e2], 1))
        d = self.dec1(torch.cat([_up2(d), e1], 1))
        d = self.dec0(torch.cat([_up2(d), e0, x], 1))
        return torch.sigmoid(crop_border(d, crop))


class FastMNet(_MNetBase):
    """LightMNet's design run at half resolution, for speed.

    The 6-channel input is pixel-unshuffled (each 2x2 block becomes 24 channels at H/2 x W/2),
    an encoder-decoder with skips runs there (one downsampling per width after the first:
    3 for the default 4 widths, 2 for 3 widths), and 4 output channels are pixel-shuffled back
    to full resolution: no 3x3 convolution runs at full resolution, about a third of
    LightMNet's multiply-adds per pixel. Same contract as ``LightMNet``, with H and W multiples
    of ``stride``. Fewer levels halve the receptive field, so tiles need half the margin.
    With ``crop``, each decoder level computes only the region the kept output depends on
    (plus a 1-pixel halo for each upsampling), with the same values as the uncropped pass:
    a tile with an 80-px margin around a 96-px cell skips about 84% of the half-resolution
    decoder.
    """

    # levels -> context (aligned reach measured: 36 and 76 px)
    _context: ClassVar[dict[int, int]] = {3: 48, 4: 80}

    @classmethod
    def context_for(cls, widths: tuple[int, ...]) -> int:
        if len(widths) not in cls._context:
            raise ValueError(f"FastMNet takes 3 or 4 widths, got {len(widths)}.")
        return cls._context[len(widths)]

    def __init__(self, widths: tuple[int, ...] = (16, 24, 32, 48)) -> None:
        super().__init__()
        self.levels = len(widths)
        self.stride = 2 ** self.levels
        self.context = self.context_for(widths)
        self.enc0 = ConvBNReLU(24, widths[0])
        for i in range(1, self.levels):
            self.add_module(f"enc{i}", nn.Sequential(ConvBNReLU(widths[i - 1], widths[i], stride=2),
                                                     ConvBNReLU(widths[i], widths[i])))
        for i in range(self.levels - 2, 0, -1):
            self.add_module(f"dec{i}", ConvBNReLU(widths[i + 1] + widths[i], widths[i]))
        self.dec0 = nn.Sequential(ConvBNReLU(widths[1] + widths[0] + 24, widths[0]),
                                  nn.Conv2d(widths[0], 4, 3, padding=1))

    def forward(self, image: torch.Tensor, trimap_probs: torch.Tensor,
                crop: int = 0) -> torch.Tensor:
        self._check_crop(crop, image)
        x = F.pixel_unshuffle(self._prepare(image, trimap_probs), 2)
        skips = [self.enc0(x)]
        for i in range(1, self.levels):
            skips.append(getattr(self, f"enc{i}")(skips[-1]))
        return torch.sigmoid(F.pixel_shuffle(self._decode(x, skips, 0, crop // 2), 2))

    def _decode(self, x: torch.Tensor, skips: list[torch.Tensor], level: int,
                crop: int) -> torch.Tensor:
        """Decoder output at ``level`` (0: half resolution) with ``crop`` pixels of that level
        dropped from each side, computed from the smallest input region that determines it."""
        if level == self.levels - 1:
            return crop_border(skips[level], crop)
        slack = crop - (2 if level == 0 else 1)  # each 3x3 convolution widens the region by 1
        if slack >= 2:  # crop the coarser level too; upsampling spoils 2 px at each border
            below = (slack - 2) // 2
            up, used = crop_border(_up2(self._decode(x, skips, level + 1, below)), 2), 2 * below + 2
        else:
            used = max(slack, 0)
            up = crop_border(_up2(self._decode(x, skips, level + 1, 0)), used)
        parts = [up, crop_border(skips[level], used)] + ([crop_border(x, used)] if level == 0 else [])
        return crop_border(getattr(self, f"dec{level}")(torch.cat(parts, 1)), crop - used)


class VGGMNet(_MNetBase):
    """The paper's M-Net: VGG16-style with batch norm.

    Encoder 13 conv + 4 max-pool (indices kept); decoder 6 conv + 4 max-unpool.
    Same contract as ``LightMNet``.
    """

    _encoder = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    context = 144

    def __init__(self) -> None:
        super().__init__()
        stages, cin = [], 6
        for widths in self._encoder:
            layers = []
            for w in widths:
                layers.append(ConvBNReLU(cin, w))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = nn.ModuleList(ConvBNReLU(a, b) for a, b in
                                     ((512, 512), (512, 256), (256, 128), (128, 64), (64, 64)))
        self.head = nn.Conv2d(64, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, trimap_probs: torch.Tensor,
                crop: int = 0) -> torch.Tensor:
        x = self._prepare(image, trimap_probs)
        self._check_crop(crop, x)
        indices, sizes = [], []
        for stage in self.stages[:-1]:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)
            indices.append(idx)
        x = self.stages[-1](x)
        for i, conv in enumerate(self.decoder[:-1]):
            x = conv(x)
            x = self.unpool(x, indices[-1 - i], output_size=sizes[-1 - i])
        return torch.sigmoid(crop_border(self.head(self.decoder[-1](x)), crop))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


MNETS: dict[str, type[_MNetBase]] = {"fast": FastMNet, "light": LightMNet, "vgg": VGGMNet}
