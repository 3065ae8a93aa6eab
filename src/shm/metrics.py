"""Matting error metrics, equal to the Deep Image Matting reference (MATLAB) evaluation code.

Inputs are alpha mattes as (H, W) uint8 arrays, or float arrays in [0, 1] that are quantised as
``round(x * 255)`` first; a 3-channel ground truth uses its first channel, as ``evaluate.m`` does.
Trimap-based metrics count only pixels whose trimap value is exactly 128 (unknown).

Values are reported as papers print them: ``sad`` is SAD/1000, ``mse`` is the mean squared
error over the unknown region (NaN when it is empty), ``grad`` is Grad/1000 and ``conn`` is
Conn/1000. Sums are single-precision and sequential (columns first), as in MATLAB, so the
reference values are reproduced to float32 rounding. The whole-image metrics of trimap-free
papers (P3M, AM-2k, PPM-100) are ``sad_whole`` (sum |p - g| / 1000), ``mse_whole`` and
``mad_whole`` (means over all pixels).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

KEYS = ("sad", "mse", "grad", "conn", "sad_whole", "mse_whole", "mad_whole")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """An alpha or trimap as (H, W) uint8: uint8 passes through, floats in [0, 1] become
    round(x * 255); (H, W, C) inputs keep channel 0."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"Expected an (H, W) alpha matte, got an array of shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"Expected uint8 or float values in [0, 1], got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if np.isnan(x).any() or x.min() < 0 or x.max() > 1:
        raise ValueError("Float alpha values must lie in [0, 1]; scale 8-bit data by 1/255 "
                         "or pass it as uint8.")
    return np.round(x * 255).astype(np.uint8)


def _prepare(pred, gt, trimap=None) -> tuple[np.ndarray, ...]:
    arrays = [to_uint8(pred), to_uint8(gt)] + ([] if trimap is None else [to_uint8(trimap)])
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("Prediction, ground truth and trimap must have the same size, got "
                         + ", ".join(f"{a.shape[1]}x{a.shape[0]}" for a in arrays) + ".")
    return tuple(arrays)


def _sum32(x: np.ndarray) -> np.float32:
    """MATLAB's single-precision sum(sum(x)): sequential column sums, then their sequential sum."""
    # Reducing a C-ordered array over axis 0 adds whole rows in order: sequential per column.
    cols = np.ascontiguousarray(x, dtype=np.float32).sum(axis=0, dtype=np.float32)
    return np.cumsum(cols, dtype=np.float32)[-1]


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of absolute differences over the unknown region, /1000 (compute_sad_loss.m)."""
    p, g, t = _prepare(pred, gt, trimap)
    err = np.abs(p.astype(np.float32) - g.astype(np.float32)) / np.float32(255)
    return float(_sum32(err * (t == 128)) / np.float32(1000))


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Mean squared error over the unknown region; NaN if it is empty (compute_mse_loss.m)."""
    p, g, t = _prepare(pred, gt, trimap)
    err = (p.astype(np.float32) - g.astype(np.float32)) / np.float32(255)
    mask = (t == 128).astype(np.float32)
    total, count = _sum32(err * err * mask), _sum32(mask)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float32(total) / np.float32(count))


def _gauss_kernels(sigma: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors of the reference's 9x9 kernel hx(i, j) = g(i) * g'(j) / ||g g'||:
    smoothing (along rows) and derivative (along columns)."""
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 0.01))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dg = -x * g / sigma**2
    norm = np.sqrt((g**2).sum() * (dg**2).sum())
    return g, dg / norm


def _gradient_amplitude(x: np.ndarray, smooth: np.ndarray, deriv: np.ndarray) -> np.ndarray:
    lo, hi = int(x.min()), int(x.max())
    if lo == hi:  # mat2gray leaves a constant image as is: its gradient is exactly 0
        return np.zeros(x.shape, np.float32)
    img = (x.astype(np.float64) - lo) / (hi - lo)
    # the kernel is separable, so two 1-D passes equal the 2-D filter (replicate borders)
    gx = cv2.sepFilter2D(img, cv2.CV_64F, deriv, smooth, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(img, cv2.CV_64F, smooth, deriv, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx**2 + gy**2).astype(np.float32)


def grad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, sigma: float = 1.4) -> float:
    """Gradient error over the unknown region, /1000 (compute_gradient_loss.m).

    Each image is normalised by its own min and max (mat2gray), filtered with a 9x9 Gaussian
    derivative (sigma 1.4, unit L2 norm) with replicate borders.
    """
    p, g, t = _prepare(pred, gt, trimap)
    smooth, deriv = _gauss_kernels(sigma)
    diff = _gradient_amplitude(p, smooth, deriv) - _gradient_amplitude(g, smooth, deriv)
    return float(_sum32(diff * diff * (t == 128)) / np.float32(1000))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component; ties go to the first in column-major order."""
    labels, count = ndimage.label(mask.T)  # labelling the transpose numbers components column-major
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == np.argmax(sizes)).T


def conn(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, step: float = 0.1) -> float:
    """Connectivity error over the unknown region, /1000 (compute_connectivity_error.m).

    Thresholds k*step; the test p/255 >= k*step is done exactly in integers.
    """
    p, g, t = _prepare(pred, gt, trimap)
    steps = round(1 / step)
    p32 = p.astype(np.float32) / np.float32(255)
    g32 = g.astype(np.float32) / np.float32(255)
    level = np.full(p.shape, -1.0, np.float32)
    both = np.minimum(p, g).astype(np.int32) * steps  # p/255 >= k*step and g/255 >= k*step
    for k in range(1, steps + 1):
        omega = _largest_component(both >= 255 * k)
        level[(level == -1) & ~omega] = np.float32((k - 1) * step)
    level[level == -1] = 1
    phis = []
    for x in (p32, g32):
        d = x - level
        phis.append(np.float32(1) - d * (d >= 0.15))
    return float(_sum32(np.abs(phis[0] - phis[1]) * (t == 128)) / np.float32(1000))


def sad_whole(pred: np.ndarray, gt: np.ndarray) -> float:
    """Whole-image SAD: sum over all pixels of |p - g| (alphas in [0, 1]), /1000."""
    p, g = _prepare(pred, gt)
    return float(np.abs(p.astype(np.float64) - g).sum() / 255 / 1000)


def mse_whole(pred: np.ndarray, gt: np.ndarray) -> float:
    """Whole-image mean squared error of alphas in [0, 1]."""
    p, g = _prepare(pred, gt)
    return float((((p.astype(np.float64) - g) / 255) ** 2).mean())


def mad_whole(pred: np.ndarray, gt: np.ndarray) -> float:
    """Whole-image mean absolute difference of alphas in [0, 1]."""
    p, g = _prepare(pred, gt)
    return float((np.abs(p.astype(np.float64) - g) / 255).mean())


def unsure_shares(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """How sure a matte is where the answer is plain: ``solid_below_0_9``, the share of pixels
    whose reference alpha is >= 0.99 and prediction < 0.9 (grey inside people), and
    ``bg_above_0_1``, the share whose reference is <= 0.01 and prediction > 0.1 (haze), both
    over all pixels of the image, in [0, 1]. Inputs as for ``evaluate`` (quantised first)."""
    p, g = _prepare(pred, gt)
    n = p.size
    return {"solid_below_0_9": float(((g >= 0.99 * 255) & (p < 0.9 * 255)).sum() / n),
            "bg_above_0_1": float(((g <= 0.01 * 255) & (p > 0.1 * 255)).sum() / n)}


def evaluate(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None
             ) -> dict[str, float | None]:
    """All metrics of ``KEYS`` as a dict; the trimap-based four are None without a trimap."""
    p, g = _prepare(pred, gt)
    out: dict[str, float | None] = dict.fromkeys(KEYS[:4])
    if trimap is not None:
        out.update(sad=sad(p, g, trimap), mse=mse(p, g, trimap), grad=grad(p, g, trimap),
                   conn=conn(p, g, trimap))
    out.update(sad_whole=sad_whole(p, g), mse_whole=mse_whole(p, g), mad_whole=mad_whole(p, g))
    return out
