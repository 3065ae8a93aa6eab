"""The editor's image tools, as functions on arrays: edge refinement and subject selection.

``refine_edge`` snaps a soft edge to the photo under a brush stroke (a colour guided filter of
the alpha, He et al. 2013) without lowering confident foreground or adding alpha to clear
background. ``split_subject`` tells the clicked person from the others inside the matte: a
watershed over the photo's edges, seeded at the click and at each person's head.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

CONFIDENT = 0.9   # refine never lowers alpha at or above this, never raises it at or below 1 - it
GUIDE_EPS = 1e-3  # guided filter regulariser (colour variance units, image in [0, 1])
SELECT_SIDE = 384  # long side of the grid select subject works on (pixels)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = GUIDE_EPS
                  ) -> np.ndarray:
    """Colour guided filter: ``src`` smoothed along the edges of ``guide``.

    guide: (H, W, 3) uint8 photo; src: (H, W) float32 in [0, 1]; radius: window radius >= 1.
    Returns (H, W) float32 in [0, 1]: per window, the linear function of the colour that best
    fits ``src`` (ridge ``eps``), averaged over the windows covering each pixel.
    """
    img = guide.astype(np.float32) / 255
    size = (2 * radius + 1,) * 2

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(img), mean(src)
    cov_ip = mean(img * src[..., None]) - mean_i * mean_p[..., None]
    outer = (img[..., :, None] * img[..., None, :]).reshape(*img.shape[:2], 9)
    var = mean(outer).reshape(*img.shape[:2], 3, 3) - mean_i[..., :, None] * mean_i[..., None, :]
    var += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(var, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(-1)
    return np.clip((mean(a) * img).sum(-1) + mean(b), 0, 1)


def edge_band(alpha: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool: pixels within ``radius`` of the edge of ``alpha`` (H, W float in [0, 1]),
    i.e. of its soft pixels or of the border of alpha > 0.5."""
    hard = (alpha > 0.5).astype(np.uint8)
    edge = cv2.morphologyEx(hard, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    soft = (alpha > 1 - CONFIDENT) & (alpha < CONFIDENT)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return cv2.dilate((edge | soft).astype(np.uint8), kernel) > 0


def refine_edge(image: np.ndarray, alpha: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """Alpha refined under a stroke.

    image: (H, W, 3) uint8; alpha: (H, W) float32 in [0, 1], the current matte; mask: (H, W)
    bool, the stroke; radius: edge radius in pixels (the guided filter's window radius and how
    far from the current edge alpha may change). Give ``radius`` pixels of context around the
    stroke. Returns (H, W) float32: changed only under the stroke near the edge, never lower
    where alpha >= CONFIDENT, never higher where alpha <= 1 - CONFIDENT.
    """
    band = mask & edge_band(alpha, radius)
    out = alpha.copy()
    if not band.any():
        return out
    rows, cols = np.flatnonzero(band.any(1)), np.flatnonzero(band.any(0))
    pad = 2 * radius + 1  # the filter's output depends on 2 * radius of context
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, alpha.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, alpha.shape[1])
    cur = alpha[r0:r1, c0:c1]
    new = guided_filter(image[r0:r1, c0:c1], cur, radius)
    new = np.where(cur >= CONFIDENT, np.maximum(cur, new), new)
    new = np.where(cur <= 1 - CONFIDENT, np.minimum(cur, new), new)
    sub = band[r0:r1, c0:c1]
    out[r0:r1, c0:c1][sub] = new[sub]
    return out


def split_subject(image: np.ndarray, alpha: np.ndarray, points: np.ndarray, remove: bool = False
                  ) -> tuple[np.ndarray, int]:
    """Foreground to drop so that only the clicked person stays (or, ``remove``, goes).

    image: (H, W, 3) uint8; alpha: (H, W) float32 in [0, 1]; points: (N, 2) [x, y] clicks inside
    the image. Works on a grid of at most SELECT_SIDE pixels a side. Blobs of the matte
    (alpha > 0.5) that no click touches are other people. A clicked blob holding several heads
    (ridges of the matte's distance map with background right above them) is split by a
    watershed over the photo's colour edges, grown from each head's spine (the column below it)
    and from the clicks, which join the head nearest them across; a person in front of another
    is so cut along their outline. Soft pixels go with the nearest person.
    Returns the (H, W) bool mask of pixels to drop and how many connected parts it has.
    """
    from skimage.segmentation import watershed

    h, w = alpha.shape
    scale = min(1.0, SELECT_SIDE / max(h, w))
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    fg = cv2.resize((alpha > 0.5).astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    if not fg.any():
        return np.zeros((h, w), bool), 0
    clicks = np.clip(np.floor(points * scale).astype(int), 0, [small[0] - 1, small[1] - 1])
    blobs = ndimage.label(fg, structure=np.ones((3, 3)))[0]
    dist = ndimage.distance_transform_edt(fg)
    nearest = ndimage.distance_transform_edt(~fg, return_distances=False, return_indices=True)
    seeds = [(int(nearest[0][y, x]), int(nearest[1][y, x])) for x, y in clicks]  # (row, col)
    subject = np.isin(blobs, [blobs[s] for s in seeds])
    heads = _heads(fg & subject, dist)
    if len(heads) > 1:  # several people in the clicked blob: grow each from its head
        photo = cv2.resize(image, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        edges = np.max([cv2.Sobel(photo[..., k], cv2.CV_32F, 1, 0) ** 2 +
                        cv2.Sobel(photo[..., k], cv2.CV_32F, 0, 1) ** 2 for k in range(3)], axis=0)
        markers = np.zeros(fg.shape, np.int32)
        for k, (r, c) in enumerate(heads):  # the spine: down from the head while in the matte
            spine = np.flatnonzero(~subject[r:, c])
            markers[r:r + (spine[0] if len(spine) else fg.shape[0]), c] = k + 1
        chosen = [int(np.argmin(np.abs(heads[:, 1] - c))) + 1 for _, c in seeds]
        for (r, c), k in zip(seeds, chosen, strict=True):
            markers[r, c] = k
        grown = watershed(edges, markers, mask=subject)
        subject = np.isin(grown, list(chosen))
    person = subject if remove else fg & ~subject
    count = ndimage.label(person, structure=np.ones((3, 3)))[1]
    # every grid pixel takes the side of the nearest matte pixel, then back to full size
    side = person[nearest[0], nearest[1]]
    drop = cv2.resize(side.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return drop & (alpha >= 0.5 / 255), count


def _heads(fg: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(K, 2) [row, col] centres of the heads in a matte: ridges of its distance map ``dist``
    (the inscribed radius, from ``fg``) with background right above them."""
    from skimage.feature import peak_local_max

    peaks = peak_local_max(dist, min_distance=max(2, round(0.05 * max(fg.shape))),
                           threshold_abs=0.2 * dist.max(), labels=fg.astype(np.int32))
    heads = []
    for r, c in peaks:
        radius = dist[r, c]
        top, bottom = max(0, round(r - 1.3 * radius)), max(0, round(r - radius) + 1)
        if top == bottom or not fg[top:bottom, c].all():  # the top of the head, or the image's
            heads.append((r, c))
    return np.array(heads, dtype=int).reshape(-1, 2)
