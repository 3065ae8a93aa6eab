import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from shm import trimap
from shm.inference.images import ImageError, load_image
from shm.inference.predictor import Matte, load_model, trimap_of
from shm.inference.tiles import TileConfig, TiledCanvas
from shm.models.fusion import fuse
from tests.conftest import astronaut


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_formats_load_as_rgb(fmt):
    out = load_image(_encode(Image.fromarray(RGB), fmt))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "I;16", "LA"])
def test_modes_are_converted(mode):
    if mode == "I;16":
        img = Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)
    else:
        img = Image.fromarray(RGB).convert(mode)
    out = load_image(_encode(img, "TIFF" if mode in ("CMYK", "I;16") else "PNG"))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    if mode == "I;16":
        assert np.abs(out[..., 0].astype(int) - RGB[..., 0]).max() <= 1


def test_exif_orientation_is_applied():
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.shape == (60, 40, 3)


def test_truncated_file_is_rejected(tmp_path):
    data = _encode(Image.fromarray(RGB), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_non_image_is_rejected(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_pixel_limit_is_enforced():
    with pytest.raises(ImageError, match="over the limit of"):
        load_image(_encode(Image.fromarray(RGB), "PNG"), max_pixels=1000)


def test_bad_array_is_rejected():
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        load_image(np.zeros((4, 4), np.uint8))


def test_predict_gives_a_matte(tiny_weights):
    model = load_model(tiny_weights)
    matte = model.predict(RGB)
    assert isinstance(matte, Matte)
    assert matte.alpha.shape == (40, 60) and matte.alpha.dtype == np.float32
    assert 0 <= matte.alpha.min() and matte.alpha.max() <= 1
    assert set(np.unique(matte.trimap)) <= {0, 128, 255}
    assert matte._foreground is None  # lazy
    rgba = matte.rgba()
    assert rgba.mode == "RGBA" and rgba.size == (60, 40)
    assert matte._foreground is not None and matte.foreground.shape == (40, 60, 3)


def test_inputs_of_every_kind_agree(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    path = tmp_path / "a.png"
    Image.fromarray(RGB).save(path)
    a = model.predict(RGB).alpha
    for source in (path, str(path), Image.fromarray(RGB), path.read_bytes()):
        assert np.array_equal(model.predict(source).alpha, a)


@pytest.mark.parametrize("window", ["box", "blocks", "cells"])
@pytest.mark.parametrize("weights", ["tiny", "tiny_fast", "tiny_lite", "shipped"])
def test_tiles_equal_a_whole_image_pass(weights, window, tiny_weights, tiny_fast_weights,
                                        tiny_lite_weights):
    folder = {"tiny": tiny_weights, "tiny_fast": tiny_fast_weights, "tiny_lite": tiny_lite_weights,
              "shipped": None}[weights]
    context = load_model(folder).tiles.margin
    max_window = {"box": 10**7, "blocks": (2 * 64 + 2 * context) ** 2, "cells": 0}[window]
    tiles = TileConfig(tile=64, margin=context, eps=-1.0, max_window=max_window)
    model = load_model(folder, tiles=tiles)
    image = astronaut()[:384, :352]
    canvas = model.canvas(image)
    tiled = model.refine(canvas)
    with torch.inference_mode():
        whole = fuse(canvas.probs, model.model.mnet(canvas.image, canvas.probs)).clamp(0, 1)
    m = canvas.cfg.margin
    whole = whole[0, 0, m:m + 384, m:m + 352].numpy()
    assert np.abs(tiled - whole).max() < 1e-4


def test_canvas_pads_the_image_and_the_softmax_of_the_logits():
    cfg = TileConfig(tile=32, margin=16)
    seen = []

    def logits(image):  # a stand-in T-Net: (1, 3, H, W) -> (1, 3, H, W)
        seen.append(image.clone())
        return torch.stack([image[:, 0] * 4, image[:, 1] - 1, -image[:, 2] * 3], 1)

    canvas = TiledCanvas(RGB, logits, cfg)
    x = torch.from_numpy(RGB).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(seen[0], x)  # the T-Net sees the unpadded image in [0, 1]
    pad = (16, 64 - 60 + 16, 16, 64 - 40 + 16)  # margin on every side, whole cells of 32
    assert torch.equal(canvas.image, torch.nn.functional.pad(x, pad, mode="replicate"))
    probs = torch.nn.functional.pad(logits(x).softmax(1), pad, mode="replicate")
    assert canvas.probs.shape == (1, 3, 40 + 2 * 16 + 24, 60 + 2 * 16 + 4)
    assert torch.allclose(canvas.probs, probs, atol=1e-6)
    fg, bg = probs[:, 2:3], probs[:, 0:1]
    assert torch.allclose(canvas.alpha_r, fg / (fg + bg), atol=1e-6)


@pytest.mark.parametrize("kind, widths, reach", [("light", (4, 8, 8, 8, 8), 93),
                                                 ("fast", (4, 8, 8, 8), 89), ("fast", (4, 8, 8), 41)])
def test_mnet_context_is_the_smallest_exact_margin_of_aligned_cells(kind, widths, reach):
    from shm.models.mnet import MNETS

    net = MNETS[kind](widths).eval()
    with torch.no_grad():  # positive weights: every path is live, the gradient shows them all
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(1 / module.weight[0].numel())
    image = torch.full((1, 3, 320, 320), 0.9, requires_grad=True)
    out = net(image, torch.full((1, 3, 320, 320), 0.5))
    reaches, margin = [], 0
    for k in range(16):  # every position in the stride-16 grid; a cell spans all of them
        grad, = torch.autograd.grad(out[0, 0, 144 + k, 144 + k], image, retain_graph=True)
        cols = grad[0].abs().sum((0, 1)).nonzero().flatten().tolist()
        left, right = 144 + k - cols[0], cols[-1] - 144 - k
        reaches.append(max(left, right))
        margin = max(margin, left - k, right + k - 15)  # beyond a cell's left and right edges
    assert max(reaches) == reach  # a pixel's own reach, up to 9 px past the context...
    assert net.context - 16 < margin <= net.context  # ...but no aligned cell reaches past it


def test_skipped_cells_follow_the_trimap(tiny_weights):
    model = load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16, eps=0.5))
    canvas = model.canvas(RGB)
    canvas.probs[:] = 0
    canvas.probs[:, 2] = 1  # sure foreground everywhere: nothing to refine
    assert canvas.cells_needing_mnet() == []
    assert np.allclose(model.refine(canvas), 1.0)


def test_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--weights"):
        load_model(tmp_path)


def test_shipped_model_finds_the_astronaut():
    model = load_model()
    image = astronaut()
    matte = model.predict(image)
    alpha = matte.alpha
    assert alpha.shape == image.shape[:2]
    # scikit-image's astronaut: the person fills the centre-left, the top-right corner is sky/flag
    assert alpha[300:450, 150:300].mean() > 0.8
    assert alpha[:40, 460:].mean() < 0.2


@pytest.mark.parametrize("kind", ["light", "fast"])
def test_onnx_export_matches_torch(kind, tiny_weights, tiny_fast_weights, tmp_path):
    from shm.inference.onnx import export_onnx
    from shm.pretrained import load_pretrained

    weights = tiny_weights if kind == "light" else tiny_fast_weights
    folder = export_onnx(load_pretrained(weights), tmp_path / "onnx", crop=16)
    tiles = TileConfig(tile=32, margin=32, eps=-1)  # every cell runs the M-Net
    torch_model = load_model(weights, tiles=tiles)
    onnx_model = load_model(folder, backend="onnx", tiles=tiles)
    for image in (RGB, astronaut()[::3, ::2]):
        a, b = torch_model.predict(image), onnx_model.predict(image)
        assert np.abs(a.alpha - b.alpha).max() < 1e-3
        assert np.array_equal(a.trimap, b.trimap)
    with pytest.raises(ValueError, match="margin of at least 16"):
        load_model(folder, backend="onnx", tiles=TileConfig(32, 0, eps=-1)).predict(RGB)


def test_onnx_backend_takes_the_tile_margin_from_the_config(tiny_lite_weights, tmp_path):
    from shm.inference.onnx import export_onnx
    from shm.pretrained import load_pretrained

    folder = export_onnx(load_pretrained(tiny_lite_weights), tmp_path / "onnx")
    assert load_model(folder, backend="onnx").tiles.margin == 48
    assert load_model(tiny_lite_weights).tiles.margin == 48


def test_onnx_backend_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="shm export --onnx"):
        load_model(tmp_path, backend="onnx")
    for name in ("tnet.onnx", "mnet.onnx"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "config.json").write_text('{"tnet_long_side": 448}')  # before the M-Net crop
    with pytest.raises(ValueError, match="exported by an older shm; export it again"):
        load_model(tmp_path, backend="onnx")
    with pytest.raises(ValueError, match="torch or onnx"):
        load_model(backend="tensorrt")


def test_trimap_is_the_argmax_of_the_probabilities_ties_included(tiny_weights):
    model = load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16))
    canvas = model.canvas(RGB)
    m, h, w = canvas.cfg.margin, canvas.height, canvas.width
    levels = torch.tensor([0.2, 0.4, 0.4])  # exact ties between channels, in every order
    probs = levels[torch.randint(0, 3, (1, 3, h + 2 * m, w + 2 * m), generator=torch.manual_seed(0))]
    canvas.probs = probs
    expected = trimap.to_uint8(probs[0, :, m:m + h, m:m + w].argmax(0).numpy())
    assert np.array_equal(trimap_of(canvas), expected)


def test_default_onnx_export_follows_a_change_of_the_shipped_config(tmp_path, monkeypatch,
                                                                    tiny_fast_weights):
    shipped = tmp_path / "weights"
    shutil.copytree(tiny_fast_weights, shipped)
    monkeypatch.setattr("shm.pretrained.default_weights_dir", lambda: shipped)
    monkeypatch.setenv("SHM_CACHE", str(tmp_path / "cache"))
    before = load_model(backend="onnx").model.tnet_long_side
    config = json.loads((shipped / "config.json").read_text())
    config["tnet_long_side"] = before + 32
    (shipped / "config.json").write_text(json.dumps(config))
    assert load_model(backend="onnx").model.tnet_long_side == before + 32
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1  # the stale export is gone


def test_flip_is_the_default_and_makes_the_trimap_mirror_equivariant():
    image = astronaut()[::2, ::2]
    flipped, plain = load_model(), load_model(flip=False)
    assert flipped.flip and not plain.flip

    def probs(model, img):
        canvas = model.canvas(np.ascontiguousarray(img))
        m = canvas.cfg.margin
        return canvas.probs[..., m:m + canvas.height, m:m + canvas.width]

    assert torch.allclose(probs(flipped, image[:, ::-1]), probs(flipped, image).flip(-1), atol=1e-5)
    assert not torch.allclose(probs(plain, image[:, ::-1]), probs(plain, image).flip(-1), atol=1e-3)


def test_inference_defaults_are_pinned():
    assert TileConfig() == TileConfig(tile=96, margin=80, eps=0.5, batch=8, max_window=2_500_000)
    model = load_model()
    assert model.tiles == TileConfig(margin=80) and model.flip and model.max_pixels == 50_000_000


def test_the_m_net_runs_where_the_trimap_is_unsure_by_default():
    model = load_model()
    image = astronaut()[::2, ::2]
    canvas = model.canvas(image)
    cells = canvas.cells_needing_mnet()
    t, m = canvas.cfg.tile, canvas.cfg.margin
    unknown = canvas.probs[0, trimap.UNKNOWN, m:m + canvas.rows * t, m:m + canvas.cols * t]
    peak = unknown.reshape(canvas.rows, t, canvas.cols, t).amax(dim=(1, 3))
    assert sorted(cells) == sorted(map(tuple, (peak > 0.5).nonzero().tolist()))
    assert 0 < len(cells) < canvas.rows * canvas.cols  # some cells run, some are skipped
    before = canvas.alpha_r.clone()
    alpha = model.refine(canvas)
    changed = {(r, c) for r in range(canvas.rows) for c in range(canvas.cols)
               if not torch.equal(before[..., m + r * t:m + (r + 1) * t, m + c * t:m + (c + 1) * t],
                                  canvas.alpha_r[..., m + r * t:m + (r + 1) * t,
                                                 m + c * t:m + (c + 1) * t])}
    assert changed == set(cells)  # the M-Net wrote exactly the unsure cells
    assert np.array_equal(model.predict(image).alpha, alpha)


def test_saved_alpha_rounds_to_nearest():
    from shm.inference.outputs import render

    alpha = np.array([[0.0, 0.4 / 255, 0.6 / 255, 127.49 / 255, 127.51 / 255, 254.6 / 255, 1.0]],
                     np.float32)
    expected = [0, 0, 1, 127, 128, 255, 255]
    matte = Matte(np.zeros((1, 7, 3), np.uint8), alpha, np.zeros((1, 7), np.uint8))
    assert matte.alpha_u8().tolist() == [expected]
    assert np.asarray(Image.open(io.BytesIO(render(matte, "alpha")))).tolist() == [expected]
    assert np.asarray(matte.rgba())[..., 3].tolist() == [expected]
    white = np.asarray(Image.open(io.BytesIO(render(matte, "rgba", "white"))))
    assert white[0, :, 0].tolist() == [255 - v for v in expected]  # black over white, rounded


def test_remove_loads_the_default_model_once(monkeypatch, tiny_weights):
    from shm.inference import predictor

    loads = []

    def counting(*args, **kwargs):
        loads.append(kwargs)
        return load_model(tiny_weights)

    predictor.default_model.cache_clear()
    monkeypatch.setattr(predictor, "load_model", counting)
    try:
        first = predictor.remove(RGB)
        second = predictor.remove(RGB)
        assert loads == [{"device": "auto", "precision": "auto"}]
        assert np.array_equal(np.asarray(first), np.asarray(second)) and first.mode == "RGBA"
        predictor.remove(RGB, device="cpu")  # another device: another model
        assert len(loads) == 2
    finally:
        predictor.default_model.cache_clear()
