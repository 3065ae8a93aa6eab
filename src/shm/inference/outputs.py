"""Turning a Matte into files: RGBA PNG, alpha PNG or JPEG over a background; atomic writes."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor

from shm.inference.images import load_image

FORMATS = ("rgba", "alpha", "jpg")
SUFFIX = {"rgba": ".png", "alpha": ".png", "jpg": ".jpg"}


def output_names(names: Iterable[Path], fmt: str) -> dict[Path, Path]:
    """The output name of each input name (relative paths): the stem with ``fmt``'s suffix
    (photo.jpg -> photo.png) or, where two inputs would share that (a.jpg and a.png, compared
    ignoring case), the whole name with the suffix (a.jpg.png and a.png.png), so no output
    overwrites another. Inputs whose whole names differ only in case may still share a name."""
    suffix = SUFFIX[fmt]
    names = list(dict.fromkeys(names))
    out = {n: n.with_suffix(suffix) for n in names}
    while True:
        counts = Counter(t.as_posix().casefold() for t in out.values())
        clash = [n for n in names if counts[out[n].as_posix().casefold()] > 1
                 and out[n] == n.with_suffix(suffix) != n.with_name(n.name + suffix)]
        if not clash:
            return out
        out.update((n, n.with_name(n.name + suffix)) for n in clash)


def parse_background(spec: str | None, size: tuple[int, int]) -> np.ndarray | None:
    """A background of (H, W) = ``size`` as (H, W, 3) uint8: a colour name or #hex, or an image
    path (resized to cover and centre-cropped). None stays None."""
    if spec is None:
        return None
    h, w = size
    try:
        rgb = ImageColor.getrgb(spec)[:3]
        return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3))
    except ValueError:
        pass
    if not Path(spec).is_file():
        raise ValueError(f"Background {spec!r} is neither a colour (name or #rrggbb) nor an "
                         "image file.")
    bg = Image.fromarray(load_image(spec))
    scale = max(w / bg.width, h / bg.height)
    bg = bg.resize((max(w, round(bg.width * scale)), max(h, round(bg.height * scale))),
                   Image.Resampling.LANCZOS)
    left, top = (bg.width - w) // 2, (bg.height - h) // 2
    return np.asarray(bg.crop((left, top, left + w, top + h)))


def render(matte, fmt: str, background: str | None = None) -> bytes:
    """Encode a Matte as ``fmt``: 'rgba' (PNG, opaque over ``background`` if given), 'alpha'
    (8-bit grey PNG) or 'jpg' (over ``background``, white by default)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    buf = io.BytesIO()
    if fmt == "alpha":
        Image.fromarray(matte.alpha_u8(), "L").save(buf, "PNG")
        return buf.getvalue()
    if fmt == "jpg" and background is None:
        background = "white"
    bg = parse_background(background, matte.alpha.shape)
    if bg is None:
        matte.rgba().save(buf, "PNG")
        return buf.getvalue()
    a = matte.alpha[..., None]
    out = (matte.foreground * a + bg * (1 - a) + 0.5).astype(np.uint8)
    if fmt == "jpg":
        Image.fromarray(out).save(buf, "JPEG", quality=95)
    else:
        Image.fromarray(out).save(buf, "PNG")
    return buf.getvalue()
