"""The training set: people photos with soft alphas, composited onto background photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from shm import trimap as tri
from shm.data import augment as aug
from shm.data.composite import cached_foreground, composite, photo_background
from shm.data.transforms import colour_jitter, cut, place, random_background, resize, window
from shm.models.shm import reduced_size
from shm.paths import default_cache_dir

MODES = ("tnet", "mnet", "refine")
# backgrounds of the robustness bench's composite rows (bg_flowers, bg_aurora, bg_gravel in
# ../shared/bench/robustness.py): never trained on, so those rows test unseen backgrounds
HELD_OUT_BACKGROUNDS = frozenset({"Depth_Anything_assets_examples_demo10.jpg",
                                  "maxsegweb_aurora_borealis.jpg",
                                  "scikit_image_src_skimage2_data_gravel.jpg"})


@dataclass(frozen=True)
class SampleSpec:
    """How one training sample is cut.

    mode 'tnet': the whole image at long side in ``long_side``, random window (T-Net's view).
    mode 'mnet': full resolution scaled by ``scale``, window centred on the unknown band.
    mode 'refine': like 'mnet', plus the whole scaled image as the T-Net sees it at inference
    (long side ``view``) and its trimap, so the M-Net can train on the T-Net's own trimaps and
    both nets together end to end, each at its inference scale.
    With probability ``real`` a sample keeps the photo's own background (no colour jitter then),
    so the T-Net also learns from real scenes, not only from composites.
    portrait: probability of framing a sample as a portrait or half-body first
    (``shm.data.augment.portrait_box``: the person cut by the frame's bottom edge and often a
    side; labels cut with the image). The T-Net modes frame with aspects 0.75-1.33 and scale the
    frame so it covers the crop; the others zoom the frame to a long side of 640-1024 px first,
    as a phone's zoom would. close_up: the share of those frames that are close-ups (the
    chin or neck at the bottom edge, the head filling the frame).
    augment: for mode 'tnet', build each sample as a scene (``shm.data.augment``: more people,
    small people, occluders, rotation, head and person blur, the camera's photometric changes)
    instead of the plain scale, crop, flip and colour jitter. For mode 'refine', small people
    (a composite's person shrunk into its scene), a darkened part of the person and a part
    painted with another photo, bystanders out of focus behind the person (labelled
    background; all three in both modes, with ``augment.dark``'s, ``augment.prints``' and
    ``augment.bystanders``' odds), head blur, person blur and the camera chain
    on the whole composite (what both nets see); the clean composite stays the target of the
    composition loss.
    """

    mode: str
    crop: int
    long_side: tuple[int, int] = (320, 448)
    scale: tuple[float, float] = (0.6, 1.0)
    trimap_width: tuple[float, float] = (0.005, 0.02)  # fraction of the short side
    real: float = 0.0  # probability of keeping the photo's own background instead of compositing
    view: int = 448  # 'refine': the T-Net's input long side
    portrait: float = 0.0
    close_up: float = 0.0
    augment: aug.AugmentConfig | None = None


class PeopleMatting(torch.utils.data.Dataset):
    """Composited training samples from ``root/people`` and ``root/backgrounds`` (less
    ``HELD_OUT_BACKGROUNDS``).

    Each item is a dict of tensors: ``image``, ``fg``, ``bg`` (3, C, C) in [0, 1],
    ``alpha`` (1, C, C) in [0, 1], ``trimap`` (C, C) int64 class indices (shm.trimap order).
    Mode 'refine' adds ``view`` (3, V, V) in [0, 1], V = ``spec.view`` rounded up to 32: the
    whole image at the T-Net's size (h, w) in its top-left corner, zeros elsewhere;
    ``view_trimap`` (V, V) int64, its trimap classes (-100, ignored by the cross-entropy,
    outside h x w); ``geometry`` (6,) int64: h, w, the whole image's height and width at the
    crop's scale, and the crop's top and left in it; and with ``augment``, ``composite``
    (3, C, C), the clean ``alpha * fg + (1 - alpha) * bg`` that ``image`` degrades.
    Augmented 'tnet' items hold ``image``, ``alpha`` and ``trimap`` only (a scene has no single
    foreground and background).
    Item i with epoch e is deterministic given ``seed`` (call ``set_epoch``).
    """

    def __init__(self, root: str | Path, split: str, spec: SampleSpec, seed: int = 0,
                 cache_dir: str | Path | None = None) -> None:
        if spec.mode not in MODES:
            raise ValueError(f"Unknown sample mode {spec.mode!r}; choose one of {MODES}.")
        if spec.augment is not None and spec.mode == "mnet":
            raise ValueError("Scene augmentation is for the 'tnet' and 'refine' modes only.")
        root = Path(root)
        people = root / "people"
        listing = people / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"No {listing}; point --data (or SHM_DATA) at the data folder.")
        self.names = listing.read_text().split()
        self.images = people / "images"
        self.alphas = people / "alphas"
        self.backgrounds = [p for p in sorted((root / "backgrounds").glob("*.jpg"))
                            if p.name not in HELD_OUT_BACKGROUNDS]
        if not self.backgrounds:
            raise FileNotFoundError(f"No background photos in {root / 'backgrounds'} (the "
                                    "robustness bench's are held out); add some .jpg scenes.")
        self.spec, self.seed, self.epoch = spec, seed, 0
        self.cache_dir = Path(cache_dir or default_cache_dir() / "foreground")
        self._photometric = aug.photometric() if spec.augment else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def source_weights(self) -> np.ndarray:
        """(N,) sampling probabilities that give each source (``source_of``) an equal share."""
        sources = [source_of(n) for n in self.names]
        counts = {s: sources.count(s) for s in set(sources)}
        weights = np.array([1 / (counts[s] * len(counts)) for s in sources])
        return weights / weights.sum()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        fg, alpha = self._person(index)
        real = self.spec.real > 0 and rng.random() < self.spec.real
        if real:
            photo = self._photo(self.images / f"{self.names[index]}.jpg")
            bg = photo_background(photo, fg, alpha)
        else:
            bg = self._photo(self.backgrounds[rng.integers(len(self.backgrounds))])
        framed = self.spec.portrait > 0 and rng.random() < self.spec.portrait
        if framed:
            fg, alpha, bg, framed = self._portrait(fg, alpha, bg, rng, real)
        if self.spec.augment is not None and self.spec.mode == "tnet":
            return self._scene(fg, alpha, bg, rng, real, framed)
        return self._sample(fg, alpha, bg, rng, real, framed)

    def _portrait(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray,
                  rng: np.random.Generator, real: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """fg, alpha (and bg if ``real``: it is aligned with them) cut to a portrait frame, and
        whether a frame was found (there may be no person)."""
        tnet_view = self.spec.mode == "tnet"
        box = aug.portrait_box(alpha, rng, (0.75, 1.33) if tnet_view else (0.56, 1.78),
                              self.spec.close_up)
        if box is None:
            return fg, alpha, bg, False
        top, left, h, w = box
        frame = lambda x: x[top:top + h, left:left + w]  # noqa: E731
        fg, alpha = frame(fg), frame(alpha)
        bg = frame(bg) if real else bg
        if not tnet_view:  # the T-Net modes rescale to their own side anyway
            zoom = rng.uniform(640, 1024) / max(h, w)
            size = (max(8, round(h * zoom)), max(8, round(w * zoom)))
            fg, alpha = resize(fg, size), np.clip(resize(alpha, size), 0, 1)
            bg = resize(bg, size) if real else bg
        return fg, alpha, bg, True

    def _person(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Foreground colours (H, W, 3) and alpha (H, W) of photo ``index``, float32 in [0, 1]."""
        name = self.names[index]
        ipath, apath = self.images / f"{name}.jpg", self.alphas / f"{name}.png"
        fg = cached_foreground(ipath, apath, self.cache_dir).astype(np.float32) / 255
        return fg, np.asarray(Image.open(apath).convert("L"), np.float32) / 255

    @staticmethod
    def _photo(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255

    def _scene(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray,
               rng: np.random.Generator, real: bool, framed: bool = False
               ) -> dict[str, torch.Tensor]:
        """A 'tnet' sample built as a scene: the person at the T-Net's inference scale (or small),
        maybe with more people and an occluder, rotated, flipped, cut to the crop, then the
        head, person and camera augmentations. bg: a background photo, or with ``real`` the
        photo's own background (aligned with fg). framed: fg and alpha are a portrait frame,
        scaled to cover the crop (never shown small)."""
        spec, cfg, crop = self.spec, self.spec.augment, self.spec.crop
        h, w = alpha.shape
        small = not framed and not real and rng.random() < cfg.small
        scale = (rng.uniform(0.1, 0.4) * crop / h if small
                 else _view_scale((h, w), spec.long_side, crop, framed, rng))
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        fg, alpha = resize(fg, size), np.clip(resize(alpha, size), 0, 1)
        fg = self._repaint(fg, alpha, rng)
        canvas = (max(crop, size[0]), max(crop, size[1]))
        top = int(rng.integers(0, canvas[0] - size[0] + 1))
        left = int(rng.integers(0, canvas[1] - size[1] + 1))
        if real:
            image = composite(fg, self._behind(resize(bg, size), size[0], rng), alpha)
            pad = (top, canvas[0] - size[0] - top, left, canvas[1] - size[1] - left)
            image = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REFLECT_101)
            scene_alpha = cv2.copyMakeBorder(alpha, *pad, cv2.BORDER_REFLECT_101)
            layers = []
        else:
            image = self._behind(random_background(bg, canvas, rng).astype(np.float32), size[0], rng)
            scene_alpha = np.zeros(canvas, np.float32)
            layers = [(fg, alpha, top, left)]
        if rng.random() < cfg.crowd:
            layers += self._others(int(rng.integers(1, 4)), size[0], canvas, rng)
            rng.shuffle(layers)
        for layer in layers:
            image, scene_alpha = aug.paste(image, scene_alpha, *layer)
        if rng.random() < cfg.occluder:
            texture = self._photo(self.backgrounds[rng.integers(len(self.backgrounds))])
            image, scene_alpha = aug.occluder(image, scene_alpha, texture, rng)
        if rng.random() < cfg.rotate:
            image, scene_alpha = aug.rotate(image, scene_alpha, rng.uniform(-1, 1) * cfg.max_angle)
        if rng.random() < 0.5:
            image, scene_alpha = image[:, ::-1], scene_alpha[:, ::-1]
        r, c = window(canvas, crop, None, rng)
        image, scene_alpha = cut(image, r, c, crop), cut(scene_alpha, r, c, crop)
        image = self._camera(image, scene_alpha, rng)
        width = max(1, round(rng.uniform(*spec.trimap_width) * min(size)))
        return {"image": _chw(image),
                "alpha": torch.from_numpy(np.ascontiguousarray(scene_alpha))[None],
                "trimap": torch.from_numpy(tri.to_classes(tri.from_alpha(scene_alpha, width)))}

    def _repaint(self, fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        """fg with part of the person darkened (``aug.darken_part``) at ``spec.augment.dark``'s
        odds, then part painted with a background photo (``aug.print_part``) at its
        ``prints``' odds; no draw for either when its odds are 0 or there is no augment, so
        older recipes replay."""
        cfg = self.spec.augment
        if cfg is None:
            return fg
        if cfg.dark > 0 and rng.random() < cfg.dark:
            fg = aug.darken_part(fg, alpha, rng)
        if cfg.prints > 0 and rng.random() < cfg.prints:
            texture = self._photo(self.backgrounds[rng.integers(len(self.backgrounds))])
            fg = aug.print_part(fg, alpha, texture, rng)
        return fg

    def _camera(self, image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator
                ) -> np.ndarray:
        """What privacy filters, moving people and cameras do to an image (H, W, 3) with
        people ``alpha`` (H, W): head blur, person blur, the photometric chain, each with
        ``spec.augment``'s odds. The alpha stays the reference."""
        cfg = self.spec.augment
        if rng.random() < cfg.head:
            image = aug.obscure_head(image, alpha, rng)
        if rng.random() < cfg.person_blur:
            image = aug.blur_people(image, alpha, rng)
        if rng.random() < cfg.photometric:
            image = aug.jitter_photometric(self._photometric, image, rng)
        return image

    def _behind(self, bg: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
        """bg (H, W, 3) with one or two bystanders pasted in at ``spec.augment.bystanders``'
        odds: other people 20-100% of ``height`` (the person's photo's) tall, out of focus
        (``aug.defocused``, a Gaussian of 1-3% of their height); the person's alpha is left
        alone, so they are background. No draw when those odds are 0 or there is no augment."""
        cfg = self.spec.augment
        if cfg is None or cfg.bystanders <= 0 or rng.random() >= cfg.bystanders:
            return bg
        far = round(height * rng.uniform(0.35, 0.8))
        unused = np.zeros(bg.shape[:2], np.float32)  # paste's alpha: bystanders stay out of it
        for fg, alpha, top, left in self._others(int(rng.integers(1, 3)), far, bg.shape[:2], rng):
            fg, alpha = aug.defocused(fg, alpha, max(1.0, rng.uniform(0.01, 0.03) * alpha.shape[0]))
            bg, _ = aug.paste(bg, unused, fg, alpha, top, left)
        return bg

    def _others(self, count: int, height: int, canvas: tuple[int, int],
                rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        """``count`` other people as (fg, alpha, top, left) layers about ``height`` tall (their
        photo's height), spread across a canvas of (height, width) = ``canvas``."""
        layers = []
        for index in rng.integers(len(self.names), size=count):
            fg, alpha = self._person(int(index))
            s = height * rng.uniform(0.6, 1.2) / alpha.shape[0]
            size = (max(8, round(alpha.shape[0] * s)), max(8, round(alpha.shape[1] * s)))
            top = int(rng.integers(min(0, canvas[0] - size[0]), max(1, canvas[0] - size[0] // 2)))
            left = int(rng.integers(-size[1] // 2, max(1, canvas[1] - size[1] // 2)))
            layers.append((resize(fg, size), np.clip(resize(alpha, size), 0, 1), top, left))
        return layers

    def _sample(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray,
                rng: np.random.Generator, real: bool = False, framed: bool = False
                ) -> dict[str, torch.Tensor]:
        """Scale, crop, flip and jitter. real: bg is the photo's own background, aligned with fg.
        framed: a portrait frame (the T-Net modes scale it to cover the crop)."""
        spec = self.spec
        if spec.mode == "refine":
            return self._refine_sample(fg, alpha, bg, rng, real, framed)
        h, w = alpha.shape
        if spec.mode == "mnet":
            scale = rng.uniform(*spec.scale)
        else:
            scale = _view_scale((h, w), spec.long_side, spec.crop, framed, rng)
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        fg, alpha = resize(fg, size), np.clip(resize(alpha, size), 0, 1)
        if real:
            bg = resize(bg, size)
        centre = None
        if spec.mode == "mnet":
            centre = _random_pixel((alpha > 0.02) & (alpha < 0.98), rng)
        if real:
            fg, alpha, bg = place(fg, alpha, spec.crop, centre, rng, bg)
        else:
            fg, alpha = place(fg, alpha, spec.crop, centre, rng)
            bg = random_background(bg, (spec.crop, spec.crop), rng)
        if rng.random() < 0.5:
            fg, alpha, bg = fg[:, ::-1], alpha[:, ::-1], bg[:, ::-1]
        if not real:
            fg, bg = colour_jitter(fg, rng), colour_jitter(bg, rng)
        return self._item(fg, alpha, bg, rng, min(size))

    def _refine_sample(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray,
                       rng: np.random.Generator, real: bool, framed: bool = False
                       ) -> dict[str, torch.Tensor]:
        """Scale, flip and jitter the whole image (and with ``spec.augment`` degrade it as a
        camera would, and with its ``small`` odds shrink a composite's person, not a portrait
        frame, to 20-50% of the image's size somewhere in it, so the T-Net sees small people
        in wide scenes), keep its T-Net view and trimap, then crop on the band."""
        spec = self.spec
        h, w = alpha.shape
        scale = rng.uniform(*spec.scale)
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        fg, alpha = resize(fg, size), np.clip(resize(alpha, size), 0, 1)
        if (spec.augment is not None and not real and not framed
                and rng.random() < spec.augment.small):
            fg, alpha = _shrink_into(fg, alpha, rng.uniform(0.2, 0.5), rng)
        fg = self._repaint(fg, alpha, rng)
        bg = self._behind(resize(bg, size) if real else random_background(bg, size, rng), size[0], rng)
        if rng.random() < 0.5:
            fg, alpha, bg = fg[:, ::-1], alpha[:, ::-1], bg[:, ::-1]
        if not real:
            fg, bg = colour_jitter(fg, rng), colour_jitter(bg, rng)
        seen = composite(fg, bg, alpha)
        if spec.augment is not None:
            seen = self._camera(seen, alpha, rng)
        centre = _random_pixel((alpha > 0.02) & (alpha < 0.98), rng)
        top, left = window(size, spec.crop, centre, rng)
        th, tw = reduced_size(size, spec.view)
        side = -(-spec.view // 32) * 32  # reduced_size rounds to multiples of 32
        view = np.zeros((side, side, 3), np.float32)
        view[:th, :tw] = resize(seen, (th, tw))
        view_alpha = np.clip(resize(alpha, (th, tw)), 0, 1)
        width = max(1, round(rng.uniform(*spec.trimap_width) * min(th, tw)))
        view_trimap = np.full((side, side), -100, np.int64)
        view_trimap[:th, :tw] = tri.to_classes(tri.from_alpha(view_alpha, width))
        item = self._item(*(cut(x, top, left, spec.crop) for x in (fg, alpha, bg)), rng, min(size))
        if spec.augment is not None:
            item["composite"], item["image"] = item["image"], _chw(cut(seen, top, left, spec.crop))
        item["view"] = _chw(view)
        item["view_trimap"] = torch.from_numpy(view_trimap)
        item["geometry"] = torch.tensor([th, tw, *size, top, left])
        return item

    def _item(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
              short_side: int) -> dict[str, torch.Tensor]:
        """Composite a crop and add its trimap (band radius a random fraction of short_side)."""
        image = composite(fg, bg, alpha)
        width = max(1, round(rng.uniform(*self.spec.trimap_width) * short_side))
        classes = tri.to_classes(tri.from_alpha(alpha, width))
        return {"image": _chw(image), "fg": _chw(fg), "bg": _chw(bg),
                "alpha": torch.from_numpy(np.ascontiguousarray(alpha))[None],
                "trimap": torch.from_numpy(classes)}


def _shrink_into(fg: np.ndarray, alpha: np.ndarray, factor: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """fg (H, W, 3) and alpha (H, W) scaled by ``factor`` and placed at a random spot of an
    empty (alpha 0) canvas of their own size."""
    h, w = alpha.shape
    size = (max(8, round(h * factor)), max(8, round(w * factor)))
    top, left = int(rng.integers(0, h - size[0] + 1)), int(rng.integers(0, w - size[1] + 1))
    canvas_fg, canvas_alpha = np.zeros_like(fg), np.zeros_like(alpha)
    canvas_fg[top:top + size[0], left:left + size[1]] = resize(fg, size)
    canvas_alpha[top:top + size[0], left:left + size[1]] = np.clip(resize(alpha, size), 0, 1)
    return canvas_fg, canvas_alpha


def source_of(name: str) -> str:
    """The source group of a photo by its name: 'ccp' (the street-fashion set) or 'other'."""
    return "ccp" if name.startswith("ccp_") else "other"


def _view_scale(shape: tuple[int, int], long_side: tuple[int, int], crop: int, framed: bool,
                rng: np.random.Generator) -> float:
    """Scale that brings an image of ``shape`` to a random long side in ``long_side``; for a
    portrait frame at least so much that it covers the crop (its edges are the photo's)."""
    scale = rng.uniform(*long_side) / max(shape)
    return max(scale, crop / min(shape)) if framed else scale


def _random_pixel(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """(row, col) of a random True pixel of ``mask``, or None if there is none."""
    pixels = np.argwhere(mask)
    return tuple(pixels[rng.integers(len(pixels))]) if len(pixels) else None


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
