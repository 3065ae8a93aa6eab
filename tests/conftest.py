"""Shared fixtures: tiny generated data, a tiny random model saved as weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def person_alpha(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A soft-edged ellipse 'person' as (H, W) uint8."""
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(seed)
    cy, cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    r = np.sqrt(((yy - cy) / (0.35 * h)) ** 2 + ((xx - cx) / (0.25 * w)) ** 2)
    return (np.clip((1.0 - r) * 8 + 0.5, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def fake_data(tmp_path: Path, monkeypatch) -> Path:
    """A data folder like ../shared/data: people/{images,alphas,train.txt,val.txt}, backgrounds."""
    monkeypatch.setenv("SHM_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for sub in ("people/images", "people/alphas", "backgrounds"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"p{i}" for i in range(6)]
    for i, name in enumerate(names):
        h, w = 96 + 8 * i, 80 + 4 * i
        alpha = person_alpha(h, w, i)
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "people/images" / f"{name}.jpg")
        Image.fromarray(alpha).save(root / "people/alphas" / f"{name}.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (120, 140, 3), dtype=np.uint8)).save(
            root / "backgrounds" / f"bg{i}.jpg")
    (root / "people/train.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "people/val.txt").write_text("\n".join(names[4:]) + "\n")
    return root


TINY_CONFIG = dict(name="tiny", tnet=dict(backbone="mobilenet_v2", ppm_channels=16,
                                          decoder_channels=8),
                   mnet=dict(kind="light", widths=[4, 8, 8, 8, 8]), tnet_long_side=64)


TINY_FAST_CONFIG = dict(TINY_CONFIG, mnet=dict(kind="fast", widths=[4, 8, 8, 8]))
TINY_LITE_CONFIG = dict(TINY_CONFIG, mnet=dict(kind="fast", widths=[4, 8, 8]))


def _save_tiny(config: dict, folder: Path) -> Path:
    from shm.config import ModelConfig, build_model
    from shm.pretrained import save_pretrained

    torch.manual_seed(0)
    save_pretrained(build_model(ModelConfig.from_dict(config)), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A seeded random tiny model (full-resolution 'light' M-Net) saved with save_pretrained."""
    return _save_tiny(TINY_CONFIG, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_fast_weights(tmp_path_factory) -> Path:
    """The same with the half-resolution 'fast' M-Net."""
    return _save_tiny(TINY_FAST_CONFIG, tmp_path_factory.mktemp("tiny_fast_model"))


@pytest.fixture(scope="session")
def tiny_lite_weights(tmp_path_factory) -> Path:
    """The same with a 3-level 'fast' M-Net (half the receptive field)."""
    return _save_tiny(TINY_LITE_CONFIG, tmp_path_factory.mktemp("tiny_lite_model"))


def astronaut() -> np.ndarray:
    """scikit-image's public-domain astronaut photo if installed, else a generated stand-in."""
    try:
        from skimage import data

        return data.astronaut()
    except ImportError:
        h, w = 256, 256
        rng = np.random.default_rng(1)
        bg = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        a = person_alpha(h, w)[..., None] / 255.0
        return (a * np.array([220, 180, 150]) + (1 - a) * bg).astype(np.uint8)


def group_of_astronauts(shift: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A group photo: two copies of ``astronaut()`` cut out with the shipped model, the second
    ``shift`` px to the right and in front of the first, over a blue-grey gradient.

    Returns the (512, 512 + shift, 3) uint8 photo and the visible alpha of the person behind and
    of the person in front, (512, 512 + shift) float32 in [0, 1] each.
    """
    from shm.inference.predictor import load_model

    person = astronaut().astype(np.float32)
    h, w = person.shape[:2]
    alpha = load_model().predict(person.astype(np.uint8)).alpha
    width = w + shift
    photo = np.linspace(40, 90, width, dtype=np.float32)[None, :, None] * np.array([0.6, 0.8, 1.0])
    photo = np.repeat(photo, h, axis=0)
    layers = []
    for left in (0, shift):
        a = np.zeros((h, width), np.float32)
        a[:, left:left + w] = alpha
        colour = np.zeros_like(photo)
        colour[:, left:left + w] = person
        photo = photo * (1 - a[..., None]) + colour * a[..., None]
        layers.append(a)
    behind, front = layers
    return photo.clip(0, 255).astype(np.uint8), behind * (1 - front), front
