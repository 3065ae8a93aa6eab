"""The inference API: ``load_model`` -> ``Matter.predict`` -> ``Matte``, and ``remove``."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shm import trimap as tri
from shm.inference.foreground import decontaminate
from shm.inference.images import DEFAULT_MAX_PIXELS, load_image
from shm.inference.tiles import TileConfig, TiledCanvas

ImageInput = str | Path | bytes | Image.Image | np.ndarray


@dataclass
class Matte:
    """The result for one photo.

    image: (H, W, 3) uint8 RGB input; alpha: (H, W) float32 in [0, 1];
    trimap: (H, W) uint8 in {0, 128, 255}. ``foreground`` (H, W, 3) uint8, colour-decontaminated,
    is computed on first access.
    """

    image: np.ndarray
    alpha: np.ndarray
    trimap: np.ndarray
    _foreground: np.ndarray | None = field(default=None, repr=False)

    @property
    def foreground(self) -> np.ndarray:
        if self._foreground is None:
            self._foreground = decontaminate(self.image, self.alpha)
        return self._foreground

    def alpha_u8(self) -> np.ndarray:
        """(H, W) uint8 alpha, round(alpha * 255)."""
        return (self.alpha * 255 + 0.5).astype(np.uint8)

    def rgba(self) -> Image.Image:
        """RGBA cutout: decontaminated foreground with alpha."""
        return Image.fromarray(np.dstack([self.foreground, self.alpha_u8()]), "RGBA")


class Matter:
    """Holds a loaded SHM model (eval mode; or ``OnDevice`` running one on a GPU or in half
    precision, or ``OnnxSHM``) and mattes photos with it. The canvas, the fusion and every
    output stay float32 on the CPU whatever the model's device.

    tiles: how the full-resolution M-Net is tiled (default: a margin of the M-Net's context,
    which makes tiles exact); max_pixels: larger inputs are refused; flip: run the T-Net on
    the mirror image too and average (``shm.models.shm.flip_averaged``; one more T-Net pass).
    """

    def __init__(self, model, tiles: TileConfig | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, flip: bool = True) -> None:
        self.model = model.eval()
        self.tiles = tiles or TileConfig(margin=model.mnet_context)
        self.max_pixels = max_pixels
        self.flip = flip

    @torch.no_grad()  # not inference_mode: the editor edits the canvas's tensors in place
    def canvas(self, image: np.ndarray, tiles: TileConfig | None = None) -> TiledCanvas:
        """T-Net trimap probabilities for an (H, W, 3) uint8 image, ready for tiled M-Net runs
        (on ``tiles``, default ``self.tiles``)."""
        return TiledCanvas(image, partial(self.model.trimap_logits, flip=self.flip),
                           tiles or self.tiles)

    @torch.no_grad()
    def run_mnet(self, canvas: TiledCanvas, cells: set[tuple[int, int]] | None = None) -> None:
        """Run the M-Net where needed (within ``cells`` if given), updating ``canvas.alpha_r``."""
        canvas.run(self.model.mnet, canvas.cells_needing_mnet(cells))

    def refine(self, canvas: TiledCanvas, cells: set[tuple[int, int]] | None = None) -> np.ndarray:
        """``run_mnet``, then the whole (H, W) float32 alpha."""
        self.run_mnet(canvas, cells)
        return canvas.alpha()[0, 0].numpy()

    def predict(self, image: ImageInput) -> Matte:
        """Matte a photo given as a path, encoded bytes, a PIL image or an HxWx3 uint8 array."""
        rgb = load_image(image, self.max_pixels)
        canvas = self.canvas(rgb)
        alpha = self.refine(canvas)
        return Matte(rgb, alpha, trimap_of(canvas))


def trimap_of(canvas: TiledCanvas) -> np.ndarray:
    """(H, W) uint8 trimap in {0, 128, 255}: the most likely class of each pixel.

    Same result as an argmax over the channels (ties go to the lower channel), without
    argmax's slow pass over a strided channel axis.
    """
    m = canvas.cfg.margin
    probs = canvas.probs[0, :, m:m + canvas.height, m:m + canvas.width]
    bg, unknown, fg = probs[tri.BACKGROUND], probs[tri.UNKNOWN], probs[tri.FOREGROUND]
    out = torch.where(fg > bg, int(tri.VALUES[tri.FOREGROUND]), int(tri.VALUES[tri.BACKGROUND]))
    out = out.to(torch.uint8)
    out[(unknown > bg) & (unknown >= fg)] = int(tri.VALUES[tri.UNKNOWN])
    return out.numpy()


def load_model(weights: str | Path | None = None, backend: str = "torch", device: str = "auto",
               precision: str = "auto", **kwargs) -> Matter:
    """Load a model ready for ``predict``; kwargs go to ``Matter``.

    backend 'torch': weights is a folder or ``model.safetensors`` path; None is the shipped model.
    Its batch norms are folded into the convolutions (``shm.models.fold``) for speed.
    backend 'onnx': weights is a folder written by ``shm export --onnx``; None exports the
    shipped model once into ``$SHM_CACHE/onnx`` (again whenever its weights, its config or
    the export format change).
    device: 'auto' (the first CUDA GPU, else Apple's MPS, else the CPU), 'cpu', 'cuda',
    'cuda:N' or 'mps' (the onnx backend: CPU or CUDA). precision: 'auto' (float16 on CUDA,
    float32 elsewhere), 'fp32', 'fp16' or 'bf16' (``shm.inference.devices``); outputs are
    float32 always. Raises FileNotFoundError or ValueError with one sentence saying what to do.
    """
    if backend == "torch":
        from shm.inference.devices import OnDevice, resolve_device, resolve_precision
        from shm.inference.onnx import TNET_FILE
        from shm.models.fold import for_inference
        from shm.pretrained import load_pretrained

        where = resolve_device(device)
        dtype = resolve_precision(where, precision)
        if weights is not None and (Path(weights) / TNET_FILE).is_file():
            raise FileNotFoundError(f"{weights} holds an ONNX export, not torch weights; use "
                                    "backend 'onnx' (--backend onnx) for it.")
        model = for_inference(load_pretrained(weights))
        if where.type != "cpu" or dtype != torch.float32:
            model = OnDevice(model, where, dtype)
        return Matter(model, **kwargs)
    if backend == "onnx":
        from shm.inference.devices import onnx_providers
        from shm.inference.onnx import OnnxSHM

        providers = onnx_providers(device, precision)
        return Matter(OnnxSHM(_default_onnx() if weights is None else weights,
                              providers=providers), **kwargs)
    raise ValueError(f"Unknown backend {backend!r}; choose torch or onnx.")


def _default_onnx() -> Path:
    """The shipped model's ONNX export under ``$SHM_CACHE/onnx``, made on first use and again
    whenever its weights, its config or the export format change."""
    from shm.inference.onnx import EXPORT_FORMAT, MNET_FILE, export_onnx
    from shm.paths import default_cache_dir
    from shm.pretrained import default_weights_dir, load_pretrained

    shipped = default_weights_dir()
    stamp = [EXPORT_FORMAT] + [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in
                               sorted(shipped.iterdir()) if p.suffix in (".json", ".safetensors")]
    digest = hashlib.sha1(repr(stamp).encode()).hexdigest()[:12]
    folder = default_cache_dir() / "onnx" / f"default-{digest}"
    if not (folder / MNET_FILE).is_file():
        export_onnx(load_pretrained(None), folder)
        for stale in folder.parent.glob("default-*"):  # earlier weights or formats
            if stale != folder:
                shutil.rmtree(stale, ignore_errors=True)
    return folder


@lru_cache(maxsize=4)
def default_model(device: str = "auto", precision: str = "auto") -> Matter:
    """The shipped model, loaded once per process for each (device, precision) asked for
    (``default_model.cache_clear()`` forgets them)."""
    return load_model(device=device, precision=precision)


def remove(image: ImageInput, model: Matter | None = None, device: str = "auto") -> Image.Image:
    """One-liner: the RGBA cutout of a photo as a PIL image, by ``model`` or else the shipped
    model on ``device`` (loaded on the first call, then kept: ``default_model``)."""
    return (model or default_model(device)).predict(image).rgba()
