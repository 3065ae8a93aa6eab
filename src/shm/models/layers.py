"""Small building blocks shared by the T-Nets and M-Nets."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Sequential):
    """Conv -> BatchNorm -> ReLU (or ReLU6), 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu6: bool = False) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
        )


class Normalize(nn.Module):
    """Maps (B, 3, H, W) RGB in [0, 1] to ImageNet-normalised values."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def crop_border(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """(..., H, W) -> (..., H - 2 pixels, W - 2 pixels): ``pixels`` rows and columns dropped on
    each side. Negative slice ends, so ONNX exports keep dynamic sizes."""
    return x[..., pixels:-pixels, pixels:-pixels] if pixels else x
