"""Evaluation datasets: a folder reader matched by file stem, and adapters for published layouts.

Each layout names (image folder, alpha folder, trimap folder or none) inside the dataset folder:

- ``folder``: any dataset: ``images/``, ``alphas/``, optional ``trimaps/``.
- ``p3m``: P3M-10k, pointed at ``validation/P3M-500-P`` or ``validation/P3M-500-NP``:
  ``blurred_image/`` or ``original_image/``, ``mask/``, ``trimap/``.
- ``am2k``: AM-2k ``validation/``: ``original/``, ``mask/``, ``trimap/``.
- ``ppm100``: PPM-100: ``image/``, ``matte/`` (no trimaps).
- ``aim500``: AIM-500: ``original/``, ``mask/``, ``trimap/``.
- ``d646``: Distinctions-646 ``Test/`` (composited): ``Image/``, ``GT/``, ``Trimap/``.
- ``comp1k``: Composition-1k test set (composited): ``merged/``, ``alpha_copy/``, ``trimaps/``.

Files are matched by stem (``a.jpg`` with ``a.png``); suffixes may differ between folders.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shm.inference.images import IMAGE_SUFFIXES

LAYOUTS: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "folder": (("images",), "alphas", "trimaps"),
    "p3m": (("blurred_image", "original_image"), "mask", "trimap"),
    "am2k": (("original",), "mask", "trimap"),
    "ppm100": (("image",), "matte", None),
    "aim500": (("original",), "mask", "trimap"),
    "d646": (("Image",), "GT", "Trimap"),
    "comp1k": (("merged",), "alpha_copy", "trimaps"),
}


class DatasetError(ValueError):
    """A dataset entry that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One evaluation item: ``source`` is the photo (or a prediction), matched by ``stem``."""

    stem: str
    source: Path
    alpha: Path
    trimap: Path | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(alpha (H, W) uint8, source as (H, W) uint8 grey or (H, W, 3) uint8 RGB, trimap or None).

        Raises DatasetError naming the file if one is unreadable or sizes differ.
        """
        alpha = read_grey(self.alpha)
        source = _read(self.source)
        trimap = read_grey(self.trimap) if self.trimap else None
        for other, path in ((source, self.source), (trimap, self.trimap)):
            if other is not None and other.shape[:2] != alpha.shape:
                raise DatasetError(f"{path} is {other.shape[1]}x{other.shape[0]} but its alpha "
                                   f"{self.alpha} is {alpha.shape[1]}x{alpha.shape[0]}.")
        return alpha, source, trimap


def read_grey(path: Path) -> np.ndarray:
    """An 8-bit (H, W) uint8 matte or trimap; the first channel of colour files."""
    arr = _read(path)
    return arr[..., 0] if arr.ndim == 3 else arr


def _read(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return (np.asarray(img, np.float64) / 257 + 0.5).astype(np.uint8)
            return np.asarray(img.convert("L" if img.mode in ("L", "P", "1") else "RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path} cannot be read as an image; replace or remove it.") from err


def _stems(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def pair_folders(sources: Path, alphas: Path, trimaps: Path | None = None,
                 skip_bad: bool = False) -> list[Sample]:
    """Match files of ``sources`` with ``alphas`` (and ``trimaps``) by stem.

    A source with no alpha (or trimap, when a trimap folder is given) raises DatasetError,
    or is skipped with a warning when ``skip_bad``.
    """
    for folder in (sources, alphas, trimaps):
        if folder is not None and not folder.is_dir():
            raise DatasetError(f"{folder} is not a folder.")
    found_alpha = _stems(alphas)
    found_trimap = _stems(trimaps) if trimaps else {}
    samples = []
    for stem, path in _stems(sources).items():
        missing = "alpha" if stem not in found_alpha else (
            "trimap" if trimaps and stem not in found_trimap else None)
        if missing:
            msg = f"{path} has no {missing} named {stem}.* in {alphas if missing == 'alpha' else trimaps}."
            if not skip_bad:
                raise DatasetError(msg)
            warnings.warn(f"skipped: {msg}", stacklevel=2)
            continue
        samples.append(Sample(stem, path, found_alpha[stem], found_trimap.get(stem)))
    if not samples:
        raise DatasetError(f"No images with matching alphas in {sources}.")
    return samples


def open_dataset(root: str | Path, layout: str = "folder", skip_bad: bool = False) -> list[Sample]:
    """Samples of a dataset folder in one of ``LAYOUTS``."""
    if layout not in LAYOUTS:
        raise DatasetError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    root = Path(root)
    image_dirs, alpha_dir, trimap_dir = LAYOUTS[layout]
    images = next((root / d for d in image_dirs if (root / d).is_dir()), None)
    if images is None:
        raise DatasetError(f"{root} does not hold the {layout} layout: expected a folder named "
                           f"{' or '.join(image_dirs)} inside it.")
    trimaps = root / trimap_dir if trimap_dir and (root / trimap_dir).is_dir() else None
    return pair_folders(images, root / alpha_dir, trimaps, skip_bad)


def iter_loaded(samples: list[Sample], skip_bad: bool = False
                ) -> Iterator[tuple[Sample, tuple[np.ndarray, np.ndarray, np.ndarray | None]]]:
    """Yield each sample with its loaded arrays; unreadable or mismatched ones raise, or are
    skipped with a warning when ``skip_bad``."""
    for sample in samples:
        try:
            yield sample, sample.load()
        except DatasetError as err:
            if not skip_bad:
                raise
            warnings.warn(f"skipped: {err}", stacklevel=2)
