"""Render docs/astronaut.png: input, alpha and cutout on a checkerboard, side by side.

Uses only scikit-image's public-domain astronaut photo. Usage: python docs/make_figure.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from shm.inference.predictor import load_model


def checkerboard(h: int, w: int, cell: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // cell) + (xx // cell)) % 2, 204, 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, 2)


def main() -> None:
    image = data.astronaut()
    matte = load_model().predict(image)
    a = matte.alpha[..., None]
    cutout = (matte.foreground * a + checkerboard(*image.shape[:2]) * (1 - a) + 0.5).astype(np.uint8)
    alpha = np.repeat(matte.alpha_u8()[..., None], 3, 2)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    row = np.concatenate([image, gap, alpha, gap, cutout], 1)
    out = Path(__file__).resolve().parent / "astronaut.png"
    Image.fromarray(row).resize((row.shape[1] // 2, row.shape[0] // 2), Image.Resampling.LANCZOS).save(out)
    print(out)


if __name__ == "__main__":
    main()
