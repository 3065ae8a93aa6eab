"""What bench scripts claim about their inputs: bench/unseen_backgrounds.py composites as the
robustness bench does, on backgrounds that are in no training pool."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def unseen():
    spec = importlib.util.spec_from_file_location("unseen_backgrounds",
                                                  BENCH / "unseen_backgrounds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_composite_lays_the_person_over_the_covering_background(unseen):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.float32)
    bg = np.zeros((15, 60, 3), np.uint8)
    bg[:, 15:45] = 200  # resized x2 to cover 30 x 40, the centre crop shows only columns 20-40
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, :10] = 255
    alpha[:, 10:20] = 128
    out = unseen.composite(image, alpha, bg)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :10], (image[:, :10] + 0.5).astype(np.uint8))
    assert np.abs(out[:, 25:].astype(int) - 200).max() <= 1  # background, resized and cropped
    mixed = 128 / 255 * image[:, 10:20] + (1 - 128 / 255) * 200
    assert np.abs(out[:, 10:20] - mixed).max() <= 1


def _thumb(image: np.ndarray) -> np.ndarray:
    grey = np.asarray(Image.fromarray(image).convert("L").resize((24, 24), Image.BILINEAR),
                      np.float32)
    return (grey - grey.mean()) / (grey.std() + 1e-6)


def test_the_unseen_backgrounds_are_in_no_training_pool(unseen):
    """None of the five looks like any photo of ../shared/data/backgrounds (normalised
    correlation of 24 x 24 grey thumbnails below 0.9; a resized or recompressed copy scores
    above 0.99)."""
    pool = SHARED / "backgrounds"
    if not pool.is_dir():
        pytest.skip("../shared/data/backgrounds is not here")
    thumbs = {name: _thumb(unseen.background(name)) for name in unseen.BACKGROUNDS}
    copy = _thumb(np.asarray(Image.fromarray(unseen.background("coins")).resize((200, 150))))
    assert (copy * thumbs["coins"]).mean() > 0.99
    for path in sorted(pool.iterdir()):
        with Image.open(path) as im:
            im.draft("RGB", (96, 96))
            other = _thumb(np.asarray(im.convert("RGB")))
        for name, thumb in thumbs.items():
            assert (thumb * other).mean() < 0.9, f"{name} looks like {path.name}"
