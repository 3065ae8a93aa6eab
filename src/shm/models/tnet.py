"""T-Net: semantic segmentation of the image into trimap logits (background, unknown, foreground)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shm.models.layers import ConvBNReLU, Normalize


class AdaptiveAvgPool(nn.Module):
    """nn.AdaptiveAvgPool2d(bins) written with integral images, so that it exports to ONNX with
    dynamic height and width. Same bin edges and values as PyTorch's."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        i = torch.arange(self.bins, device=x.device)
        r0, r1 = (i * h) // self.bins, ((i + 1) * h + self.bins - 1) // self.bins
        c0, c1 = (i * w) // self.bins, ((i + 1) * w + self.bins - 1) // self.bins
        rows = F.pad(x.cumsum(2), (0, 0, 1, 0))
        rows = rows.index_select(2, r1) - rows.index_select(2, r0)
        cells = F.pad(rows.cumsum(3), (1, 0))
        cells = cells.index_select(3, c1) - cells.index_select(3, c0)
        area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
        return cells / area.to(x.dtype)


class PyramidPooling(nn.Module):
    """PSP module: pools at several grid sizes, projects, upsamples and concatenates."""

    def __init__(self, cin: int, cout: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        branch = cin // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool(b), ConvBNReLU(cin, branch, 1)) for b in bins)
        self.project = ConvBNReLU(cin + branch * len(bins), cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(s(x), size, mode="bilinear", align_corners=False)
                  for s in self.stages]
        return self.project(torch.cat([x, *pooled], 1))


class TNet(nn.Module):
    """Encoder + pyramid pooling + a light decoder with skips.

    Input (B, 3, H, W) RGB in [0, 1], H and W multiples of 32.
    Output (B, 3, H, W) trimap logits in the order of ``shm.trimap.CHANNELS``, multiplied by
    ``logit_scale`` (a temperature fitted on training photos: above 1 makes the trimap surer).
    """

    def __init__(self, encoder: nn.Module, ppm_channels: int, decoder_channels: int,
                 logit_scale: float = 1.0) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.normalize = Normalize()
        self.encoder = encoder
        chans = encoder.channels
        self.ppm = PyramidPooling(chans[-1], ppm_channels)
        self.lateral = nn.ModuleList(ConvBNReLU(c, decoder_channels, 1) for c in chans[1:3])
        self.up16 = ConvBNReLU(ppm_channels + chans[3], decoder_channels, 3)
        self.fuse8 = ConvBNReLU(decoder_channels * 2, decoder_channels, 3)
        self.fuse4 = ConvBNReLU(decoder_channels * 2, decoder_channels, 3)
        self.head = nn.Conv2d(decoder_channels, 3, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        _, f4, f8, f16, f32 = self.encoder(self.normalize(image))
        x = _up(self.ppm(f32), f16)
        x = self.up16(torch.cat([x, f16], 1))
        x = self.fuse8(torch.cat([_up(x, f8), self.lateral[1](f8)], 1))
        x = self.fuse4(torch.cat([_up(x, f4), self.lateral[0](f4)], 1))
        logits = F.interpolate(self.head(x), image.shape[-2:], mode="bilinear", align_corners=False)
        return logits if self.logit_scale == 1.0 else logits * self.logit_scale


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, like.shape[-2:], mode="bilinear", align_corners=False)
