"""T-Net: semantic segmentation of the image into trimap logits (background, unknown, foreground)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shm.models.layers import ConvBNReLU, Normalize


class PyramidPooling(nn.Module):
    """PSP module: pools at several grid sizes, projects, upsamples and concatenates."""

    def __init__(self, cin: int, cout: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        branch = cin // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(cin, branch, 1)) for b in bins)
        self.project = ConvBNReLU(cin + branch * len(bins), cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(s(x), size, mode="bilinear", align_corners=False)
                  for s in self.stages]
        return self.project(torch.cat([x, *pooled], 1))


class TNet(nn.Module):
    """Encoder + pyramid pooling + a light decoder with skips.

    Input (B, 3, H, W) RGB in [0, 1], H and W multiples of 32.
    Output (B, 3, H, W) trimap logits in the order of ``shm.trimap.CHANNELS``.
    """

    def __init__(self, encoder: nn.Module, ppm_channels: int, decoder_channels: int) -> None:
        super().__init__()
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
        f2, f4, f8, f16, f32 = self.encoder(self.normalize(image))
        x = _up(self.ppm(f32), f16)
        x = self.up16(torch.cat([x, f16], 1))
        x = self.fuse8(torch.cat([_up(x, f8), self.lateral[1](f8)], 1))
        x = self.fuse4(torch.cat([_up(x, f4), self.lateral[0](f4)], 1))
        return F.interpolate(self.head(x), image.shape[-2:], mode="bilinear", align_corners=False)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, like.shape[-2:], mode="bilinear", align_corners=False)
