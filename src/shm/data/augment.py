"""Augmentation that covers what cameras and people do, with labels kept exact.

Photometric changes (albumentations) touch the image only; geometric ones move the alpha with
the image; occluders in front of a person cut the alpha (``alpha * (1 - occluder)``); several
people in one scene take the union of their alphas. Arrays throughout: images (H, W, 3)
float32 in [0, 1], alphas (H, W) float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from shm.data.transforms import random_background


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities of each augmentation, per sample."""

    photometric: float = 0.85  # the albumentations chain (each of its parts has its own odds)
    person_blur: float = 0.12  # blur (Gaussian or motion) of the people only
    head: float = 0.12  # blur or mosaic over the main person's head
    occluder: float = 0.2  # a patch pasted in front of the person
    crowd: float = 0.25  # one to three more people pasted into the scene
    small: float = 0.15  # the person 10-40% of the frame height
    rotate: float = 0.3  # rotation up to ``max_angle`` degrees
    max_angle: float = 15.0
    dark: float = 0.0  # part of the main person darkened (``darken_part``): a dark garment
    prints: float = 0.0  # part of the main person painted with another photo (``print_part``)
    bystanders: float = 0.0  # people out of focus behind the person, background (``defocused``)


def photometric() -> A.Compose:
    """The camera side: resolution, blur, colour, exposure, noise and compression, in the order
    a camera and an upload pipeline apply them. Works on float32 images in [0, 1]."""
    return A.Compose([
        A.Downscale(scale_range=(0.3, 0.8), p=0.15),
        A.OneOf([
            A.MotionBlur(blur_limit=(5, 25), allow_shifted=False),
            A.Defocus(radius=(2, 7), alias_blur=(0.1, 0.4)),
            A.GaussianBlur(sigma_limit=(1.0, 4.0), blur_limit=0),
        ], p=0.3),
        A.OneOf([
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.4, hue=0.03),
            A.MultiplicativeNoise(multiplier=(0.6, 1.3), per_channel=True, elementwise=False),
            A.PlanckianJitter(),
            A.RGBShift(r_shift_limit=0.08, g_shift_limit=0.08, b_shift_limit=0.08),
        ], p=0.6),
        A.ToGray(p=0.12),
        A.OneOf([
            A.RandomGamma(gamma_limit=(150, 300)),  # low light: x ** 1.5-3
            A.RandomGamma(gamma_limit=(40, 80)),  # overexposure
            A.RandomBrightnessContrast(brightness_limit=(-0.4, 0.4), contrast_limit=(-0.4, 0.3)),
        ], p=0.35),
        A.OneOf([
            A.GaussNoise(std_range=(0.02, 0.09)),
            A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.6)),
        ], p=0.3),
        A.ImageCompression(quality_range=(10, 75), p=0.3),
    ])


def jitter_photometric(chain: A.Compose, image: np.ndarray, rng: np.random.Generator
                       ) -> np.ndarray:
    """``chain`` applied to ``image`` with seeds drawn from ``rng`` (reproducible per sample)."""
    _seed(chain, rng)
    # clipped first: float rounding can leave 1.0000001, where ISONoise returns NaN
    out = chain(image=np.ascontiguousarray(np.clip(image, 0, 1), np.float32))["image"]
    return np.clip(out, 0, 1).astype(np.float32)


def _seed(transform: A.BasicTransform | A.BaseCompose, rng: np.random.Generator) -> None:
    """Seed ``transform`` and, each with its own seed, everything inside it (albumentations'
    ``set_random_seed`` gives all children the parent's seed, so their odds would be drawn
    from the same number: all of them applied, or none)."""
    transform.set_random_seed(int(rng.integers(2**31)))
    if isinstance(transform, A.BaseCompose):
        for child in transform.transforms:
            _seed(child, rng)


def paste(image: np.ndarray, alpha: np.ndarray, fg: np.ndarray, fg_alpha: np.ndarray,
          top: int, left: int, occludes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Composite layer (fg, fg_alpha) in front of (image, alpha) at (top, left); parts outside
    the canvas are dropped. The new alpha is the union ``a + (1 - a) * alpha`` for a person, or
    ``alpha * (1 - a)`` for an occluder. Returns new arrays."""
    h, w = alpha.shape
    lh, lw = fg_alpha.shape
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + lh, h), min(left + lw, w)
    image, alpha = image.copy(), alpha.copy()
    if r1 <= r0 or c1 <= c0:
        return image, alpha
    a = fg_alpha[r0 - top:r1 - top, c0 - left:c1 - left]
    f = fg[r0 - top:r1 - top, c0 - left:c1 - left]
    image[r0:r1, c0:c1] = a[..., None] * f + (1 - a[..., None]) * image[r0:r1, c0:c1]
    below = alpha[r0:r1, c0:c1]
    alpha[r0:r1, c0:c1] = below * (1 - a) if occludes else a + (1 - a) * below
    return image, alpha


def occluder(image: np.ndarray, alpha: np.ndarray, texture: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste an opaque patch (an ellipse, rectangle or polygon of ``texture`` or one flat colour)
    over 5-30% of the person's box; the alpha under it drops to 0."""
    box = _box(alpha > 0.5)
    if box is None:
        return image, alpha
    top, left, bh, bw = box
    area = rng.uniform(0.05, 0.3) * bh * bw
    ph = int(np.clip(np.sqrt(area) * rng.uniform(0.5, 2.0), 8, 2 * bh))
    pw = int(np.clip(area / ph, 8, 2 * bw))
    mask = np.zeros((ph, pw), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(mask, (pw // 2, ph // 2), (pw // 2, ph // 2), 0, 0, 360, 1, -1)
    elif kind == 1:
        mask[:] = 1
    else:
        pts = rng.uniform(0, 1, (int(rng.integers(3, 8)), 2)) * [pw - 1, ph - 1]
        cv2.fillPoly(mask, [cv2.convexHull(pts.astype(np.int32))], 1)
    soft = mask.astype(np.float32)
    if rng.random() < 0.5:
        soft = cv2.GaussianBlur(soft, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.3:
        patch = np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32), (ph, pw, 3))
    else:
        patch = random_background(texture, (ph, pw), rng)
    r = top + int(rng.integers(0, max(1, bh - ph // 2)))
    c = left + int(rng.integers(-pw // 2, max(1, bw - pw // 2)))
    return paste(image, alpha, patch, soft, r, c, occludes=True)


def darken_part(fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dark garment, visor or shadow: the foreground colours ``fg`` of the largest person
    darkened to 3-30% of their value (half the time also grey) over a smooth random blob
    covering 15-50% of that person, feathered. Only the colours change, so the alpha stays
    exact; composite afterwards. Returns a new (H, W, 3) array (``fg`` if there is no person)."""
    where = part_of_person(alpha, (0.15, 0.5), rng)
    if where is None:
        return fg
    dark = fg * rng.uniform(0.03, 0.3)
    if rng.random() < 0.5:
        dark = np.repeat(dark.mean(2, keepdims=True), 3, 2)
    m = where[..., None]
    return (m * dark + (1 - m) * fg).astype(np.float32)


def print_part(fg: np.ndarray, alpha: np.ndarray, texture: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """A print, screen or reflection on the person (a T-shirt's picture, a visor mirroring the
    scene): the foreground colours ``fg`` of the largest person replaced, over a smooth random
    blob covering 8-35% of that person (feathered), by a window of ``texture`` (another photo,
    (h, w, 3) float32 in [0, 1]) at 40-100% of its brightness. The person stays person: only
    the colours change, so the alpha stays exact; composite afterwards. The blob keeps 5% of
    the person's box inside their outline, as a print or a visor sits inside a garment or a
    helmet: an outline of the photo against the background would teach the T-Net to take
    textured backgrounds for people. Returns a new (H, W, 3) array (``fg`` if there is no
    person)."""
    where = part_of_person(alpha, (0.08, 0.35), rng, margin=0.05)
    if where is None:
        return fg
    picture = random_background(texture, alpha.shape, rng) * rng.uniform(0.4, 1.0)
    m = where[..., None]
    return (m * picture + (1 - m) * fg).astype(np.float32)


def defocused(fg: np.ndarray, alpha: np.ndarray, sigma: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """A person out of focus: colours (h, w, 3) and alpha (h, w) blurred by a Gaussian of
    ``sigma`` px, the colours premultiplied by the alpha so no dark fringe bleeds in. Pasted
    into a background (``paste`` on it, the scene's alpha left alone) it is a bystander: part of
    the background, as a portrait's reference matte leaves blurred passers-by out."""
    a = cv2.GaussianBlur(alpha, (0, 0), sigma)
    f = cv2.GaussianBlur(fg * alpha[..., None], (0, 0), sigma) / np.maximum(a, 1e-3)[..., None]
    return np.clip(f, 0, 1).astype(np.float32), np.clip(a, 0, 1).astype(np.float32)


def part_of_person(alpha: np.ndarray, share: tuple[float, float], rng: np.random.Generator,
                   margin: float = 0.0) -> np.ndarray | None:
    """A smooth random blob over a ``share`` (low, high) of the largest person's pixels, as an
    (H, W) float32 mask in [0, 1] feathered by 1% of the person's box; with ``margin``, cut to
    the person eroded by that share of the box's shorter side. None if no person."""
    person = largest_person(alpha)
    if person is None:
        return None
    mask, (top, left, ph, pw) = person
    cells = rng.integers(2, 6, size=2)  # the blob's smoothness: a few random values, upsampled
    field = cv2.resize(rng.random(cells).astype(np.float32), (pw, ph), interpolation=cv2.INTER_CUBIC)
    inside = field[mask[top:top + ph, left:left + pw]]
    blob = (field >= np.quantile(inside, 1 - rng.uniform(*share))).astype(np.float32)
    feather = max(0.5, 0.01 * max(ph, pw))
    if margin > 0:  # erode by the margin and the feather's reach (2 sigma)
        size = round(2 * (margin * min(ph, pw) + 2 * feather)) | 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        blob *= cv2.erode(mask.astype(np.uint8), kernel)[top:top + ph, left:left + pw]
    blob = cv2.GaussianBlur(blob, (0, 0), feather)
    where = np.zeros(alpha.shape, np.float32)
    where[top:top + ph, left:left + pw] = blob
    return where


def largest_person(alpha: np.ndarray
                   ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The largest 8-connected region of alpha > 0.5 as an (H, W) bool mask, with its box
    (top, left, height, width); None if there is none."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8),
                                                        connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    return lab == k, (y, x, h, w)


def head_region(alpha: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(centre (x, y), semi-axes (ax, ay)) of an ellipse over the head of the largest person
    (the top 18% of its box, as wide as the person's median row there), or None if no person."""
    person = largest_person(alpha)
    if person is None:
        return None
    mask, (y, _, h, _) = person
    band = mask[y:y + max(4, round(0.18 * h))]
    widths = band.sum(1)
    cols = band.sum(0)
    cx = float((cols * np.arange(len(cols))).sum() / max(cols.sum(), 1))  # cols span the image
    head_w = max(8.0, float(np.median(widths[widths > 0])))
    head_h = max(band.shape[0], 1.3 * head_w)
    return (round(cx), round(y + head_h / 2)), (round(0.6 * head_w), round(0.55 * head_h))


def obscure_head(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (Gaussian, sigma = head width / 8-3) or pixelate the head of the largest person,
    as privacy filters do. The alpha is unchanged."""
    region = head_region(alpha)
    if region is None:
        return image
    (cx, cy), (ax, ay) = region
    mask = np.zeros(alpha.shape, np.float32)
    cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1.0, -1)
    if rng.random() < 0.6:
        hidden = cv2.GaussianBlur(image, (0, 0), max(1.0, 2 * ax / rng.uniform(3, 8)))
    else:
        h, w = alpha.shape
        cell = max(2, round(2 * ax / rng.uniform(4, 12)))
        small = cv2.resize(image, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
        hidden = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        mask = (mask > 0).astype(np.float32)
    m = mask[..., None]
    return (m * hidden + (1 - m) * image).astype(np.float32)


def blur_people(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur only the people (moving subject, focus on the background): the blurred image is
    mixed in under a dilated, feathered alpha. The alpha (the sharp reference) is unchanged."""
    h, w = alpha.shape
    size = max(3, round(rng.uniform(0.004, 0.02) * max(h, w)) | 1)
    if rng.random() < 0.5:
        blurred = cv2.GaussianBlur(image, (0, 0), size / 2)
    else:
        kernel = np.zeros((size, size), np.float32)
        kernel[size // 2] = 1 / size
        rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rot, (size, size))
        blurred = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
    spread = cv2.GaussianBlur(cv2.dilate(alpha, np.ones((size, size), np.uint8)), (0, 0), size / 2)
    m = np.clip(spread, 0, 1)[..., None]
    return (m * blurred + (1 - m) * image).astype(np.float32)


def rotate(image: np.ndarray, alpha: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate image and alpha alike by ``angle`` degrees about the centre, borders mirrored (so
    the label stays exact everywhere)."""
    h, w = alpha.shape
    mat = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    warp = lambda x: cv2.warpAffine(x, mat, (w, h), flags=cv2.INTER_LINEAR,  # noqa: E731
                                    borderMode=cv2.BORDER_REFLECT_101)
    return warp(image), np.clip(warp(alpha), 0, 1)


STANDING = 2.2  # portrait_box: height over width of a standing figure


def portrait_box(alpha: np.ndarray, rng: np.random.Generator,
                 aspect: tuple[float, float] = (0.56, 1.78), close_up: float = 0.0
                 ) -> tuple[int, int, int, int] | None:
    """A frame (top, left, height, width) inside the image that shows the largest person as
    portraits and half-bodies do: head and shoulders, chest-up or waist-up (the bottom edge
    22-65% of the person's height below the head), the visible person filling 60-120% of the
    frame's height (over 100%: the top of the head cut), often cut by a side too. With
    probability ``close_up``, for a standing figure (at least STANDING times as tall as wide,
    so its height measures its head), a close-up instead, as selfies are: the bottom edge at
    the chin or neck (10-22% of the height below the head), filling 90-160% of the frame (a
    portrait photo's own frames are close-ups already). Width over height is drawn
    log-uniformly from ``aspect``; the frame is clamped inside the image, so it can only end
    where the photo does. None if there is no person (alpha > 0.5)."""
    person = largest_person(alpha)
    if person is None:
        return None
    mask, (y0, _, ph, pw) = person
    h, w = alpha.shape
    # no draw at close_up 0, so older recipes replay
    close = close_up > 0 and ph >= STANDING * pw and rng.random() < close_up
    depth, fill = ((0.10, 0.22), (0.9, 1.6)) if close else ((0.22, 0.65), (0.6, 1.2))
    bottom = min(h, round(y0 + rng.uniform(*depth) * ph))
    span = bottom - y0
    if span < 8:
        return None
    fh = min(bottom, max(8, round(span / rng.uniform(*fill))))  # the photo's top ends it
    fw = min(w, max(8, round(fh * np.exp(rng.uniform(*np.log(aspect))))))
    cols = mask[y0:bottom].sum(0)
    cx = float((cols * np.arange(w)).sum() / max(cols.sum(), 1))
    left = round(cx - fw / 2 + rng.uniform(-0.25, 0.25) * fw)
    return bottom - fh, int(np.clip(left, 0, w - fw)), fh, fw


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the True pixels of mask, or None."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
