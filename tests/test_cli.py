import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shm import metrics
from shm.cli import app
from tests.conftest import SHARED
from tests.fuzz import zero_png

runner = CliRunner()
REF = SHARED / "metrics-reference"


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), np.uint8)).save(folder / name)
    return folder


def test_cutout_writes_rgba_for_a_folder(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    res = runner.invoke(app, ["cutout", str(photos), "-o", str(out), "--weights", str(tiny_weights)])
    assert res.exit_code == 0, res.output
    img = Image.open(out / "sub" / "b.png")
    assert img.mode == "RGBA" and img.size == (40, 48)
    assert (out / "a.png").is_file()


def test_cutout_alpha_and_jpg_formats(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    args = [str(photos / "a.jpg"), "-o", str(out), "--weights", str(tiny_weights)]
    assert runner.invoke(app, ["cutout", *args, "--format", "alpha"]).exit_code == 0
    alpha = Image.open(out / "a.png")
    assert alpha.mode == "L" and alpha.size == (40, 48)
    res = runner.invoke(app, ["cutout", *args, "--format", "jpg", "--background", "#00ff00"])
    assert res.exit_code == 0
    assert Image.open(out / "a.jpg").format == "JPEG"


def test_cutout_skips_existing_outputs_without_flag(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    args = ["cutout", str(photos / "a.jpg"), "-o", str(out), "--weights", str(tiny_weights)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "Loading the model..." in first.output
    (out / "a.png").write_bytes(b"keep me")
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "0 written" in res.output and "1 skipped" in res.output
    assert "--overwrite" in res.output and "0 failed" in res.output
    assert (out / "a.png").read_bytes() == b"keep me"
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert Image.open(out / "a.png").mode == "RGBA"


def test_one_bad_file_does_not_stop_the_others(photos, tmp_path, tiny_weights):
    (photos / "broken.jpg").write_text("not a photo")
    out = tmp_path / "out"
    res = runner.invoke(app, ["cutout", str(photos), str(tmp_path / "missing*.png"), "-o",
                              str(out), "--weights", str(tiny_weights)])
    assert res.exit_code == 1
    assert "2 written" in res.output and "2 failed" in res.output
    assert "broken.jpg" in res.output and "missing" in res.output
    assert (out / "a.png").is_file() and not list(out.glob("*.tmp"))


def test_cutout_keeps_same_stem_inputs_apart_and_skips_its_output_folder(photos, tiny_weights):
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(photos / "a.png")  # beside a.jpg
    (photos / "bomb.png").write_bytes(zero_png(30000, 30000))
    out = photos / "cut"
    args = ["cutout", str(photos), "-o", str(out), "--weights", str(tiny_weights), "--overwrite"]
    for _ in range(2):
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and "3 written" in res.output and "1 failed" in res.output
        assert "bomb.png" in res.output and "decompression bomb" in res.output
        assert "Traceback" not in res.output
    assert Image.open(out / "a.jpg.png").size == (40, 48)
    assert Image.open(out / "a.png.png").size == (20, 30)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.jpg.png", "a.png.png", "sub/b.png"]  # the second run did not cut out the cutouts


def test_cutout_refuses_two_inputs_for_one_output(photos, tmp_path, tiny_weights):
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "a.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(twin)
    out = tmp_path / "out"
    res = runner.invoke(app, ["cutout", str(photos / "a.jpg"), str(twin), str(photos / "a.jpg"),
                              "-o", str(out), "--weights", str(tiny_weights)])
    assert res.exit_code == 1 and "1 written" in res.output and "1 failed" in res.output
    assert f"is the cutout of {photos / 'a.jpg'} already" in res.output
    assert Image.open(out / "a.png").size == (40, 48)  # the first input's, not overwritten


def test_batch_rerun_counts_the_failures_it_lists(photos, tmp_path, tiny_weights):
    (photos / "broken.jpg").write_text("not a photo")
    args = ["batch", str(photos), str(tmp_path / "out"), "--weights", str(tiny_weights)]
    assert "2 done" in runner.invoke(app, args).output
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "2 skipped as finished before, 1 failed (1 in an earlier run" in res.output
    assert "failed: broken.jpg" in res.output


def test_cutout_rejects_unknown_format_and_background(photos, tiny_weights):
    res = runner.invoke(app, ["cutout", str(photos), "--format", "gif"])
    assert res.exit_code == 2 and "choose one of rgba, alpha, jpg" in res.output
    res = runner.invoke(app, ["cutout", str(photos), "--background", "not-a-colour"])
    assert res.exit_code == 2 and "neither a colour" in res.output


def test_cutout_missing_weights_is_one_sentence(photos, tmp_path):
    res = runner.invoke(app, ["cutout", str(photos), "--weights", str(tmp_path)])
    assert res.exit_code == 1 and "No model weights" in res.output
    assert "Traceback" not in res.output


@pytest.mark.skipif(not SHARED.parent.is_dir(), reason="no ../shared beside this clone")
def test_eval_json_on_the_reference_files(tmp_path):
    assert (REF / "reference.json").is_file(), f"{REF}/reference.json is missing"
    for kind, folder in (("pred", "pred"), ("gt", "gt"), ("trimap", "trimap")):
        (tmp_path / folder).mkdir()
        for f in REF.glob(f"*_{kind}.png"):
            shutil.copy(f, tmp_path / folder / f.name.replace(f"_{kind}.png", ".png"))
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                              "--trimap", str(tmp_path / "trimap"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    ref = json.loads((REF / "reference.json").read_text())
    cases = [k for k in ref if k != "convention"]
    assert sorted(report["images"]) == sorted(cases)
    for name in cases:
        got = report["images"][name]
        assert set(got) == set(metrics.KEYS)
        assert got["sad"] == pytest.approx(ref[name]["sad"], rel=1e-5)
        assert got["grad"] * 1000 == pytest.approx(ref[name]["grad"], rel=1e-5)
        assert got["conn"] * 1000 == pytest.approx(ref[name]["conn"], rel=1e-5)
        if ref[name]["mse"] != ref[name]["mse"]:
            assert got["mse"] is None
        else:
            assert got["mse"] == pytest.approx(ref[name]["mse"], rel=1e-5)
    assert report["mean"]["sad"] == pytest.approx(
        np.mean([ref[n]["sad"] for n in cases]), rel=1e-5)


def test_eval_without_trimap_gives_nulls(tmp_path):
    for folder in ("p", "g"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((8, 8), 200 if folder == "p" else 255, np.uint8)).save(
            tmp_path / folder / "x.png")
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "g"),
                              "--json"])
    report = json.loads(res.stdout)
    assert report["images"]["x"]["sad"] is None
    assert report["images"]["x"]["mad_whole"] == pytest.approx(55 / 255)


def test_eval_runs_the_model_on_a_dataset(tmp_path, tiny_weights):
    rng = np.random.default_rng(0)
    for folder in ("images", "alphas"):
        (tmp_path / folder).mkdir()
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (40, 32, 3), np.uint8)).save(tmp_path / "images" / f"{stem}.jpg")
        Image.fromarray(rng.integers(0, 255, (40, 32), np.uint8)).save(tmp_path / "alphas" / f"{stem}.png")
    res = runner.invoke(app, ["eval", "--data", str(tmp_path), "--weights", str(tiny_weights), "--json"])
    assert res.exit_code == 0, res.output
    assert sorted(json.loads(res.stdout)["images"]) == ["a", "b"]


def test_eval_usage_errors(tmp_path):
    res = runner.invoke(app, ["eval"])
    assert res.exit_code == 2 and "--pred and --gt" in res.output
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path), "--gt", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "is not a folder" in res.output
    res = runner.invoke(app, ["eval", "--data", str(tmp_path), "--layout", "coco"])
    assert res.exit_code == 2 and "Unknown layout" in res.output


@pytest.mark.parametrize("band, message", [("0.1", "is not two numbers"),
                                           ("0.2,0.1", "needs 0 < LOW <= HIGH < 0.5")])
def test_train_rejects_a_bad_band_in_one_sentence(tmp_path, band, message):
    res = runner.invoke(app, ["train", "--stage", "mnet", "--out", str(tmp_path), "--band", band])
    assert res.exit_code == 2 and message in res.output
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_short_help_option():
    res = runner.invoke(app, ["cutout", "-h"])
    assert res.exit_code == 0 and "--overwrite" in res.output


def test_serve_says_when_the_port_is_taken():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["serve", "--port", str(port)])
    assert res.exit_code == 1 and f"--port {port + 1}" in res.output
    assert "Loading the model" not in res.output  # checked before the slow part
    program = res.output.split("e.g. ")[1].split(" serve --port")[0]
    assert program != "shm" and Path(program).is_file()  # runs without .venv/bin on PATH
    assert Path(program).absolute().parent == Path(sys.executable).parent


def test_a_looping_folder_link_is_skipped_and_listed_for_globs_and_folders(photos, tmp_path,
                                                                           tiny_weights):
    (photos / "self").symlink_to(".")
    (photos / "sub" / "c.jpg").write_bytes((photos / "a.jpg").read_bytes())
    for spec in (f"{photos}/**/*.jpg", str(photos)):
        out = tmp_path / "out"
        res = runner.invoke(app, ["cutout", spec, "-o", str(out), "--weights", str(tiny_weights),
                                  "--overwrite"])
        assert res.exit_code == 0, res.output
        assert f"skipped folder: {photos / 'self'}: a link back to {photos}, which would loop" \
            in res.output
        names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
        assert names == (["a.png", "c.png"] if "**" in spec else ["a.png", "sub/b.png", "sub/c.png"])
        shutil.rmtree(out)


def test_batch_lists_an_unreadable_input_as_one_failure(photos, tmp_path, tiny_weights,
                                                        monkeypatch):
    from tests.test_batch import _unreadable

    _unreadable(monkeypatch, photos / "a.jpg")
    res = runner.invoke(app, ["batch", str(photos), str(tmp_path / "out"), "--weights",
                              str(tiny_weights)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "2 inputs: 1 done, 0 skipped as finished before, 1 failed" in res.output
    assert "failed: a.jpg: cannot be read (Permission denied)" in res.output


def test_an_exported_model_runs_in_cutout_and_batch(photos, tmp_path, tiny_fast_weights):
    onnx = tmp_path / "onnx"
    res = runner.invoke(app, ["export", "--onnx", str(onnx), "--weights", str(tiny_fast_weights)])
    assert res.exit_code == 0 and f"--backend onnx --weights {onnx}" in res.output
    out = tmp_path / "out"
    args = [str(photos / "a.jpg"), "--format", "alpha", "--weights"]
    res = runner.invoke(app, ["cutout", *args, str(onnx), "-o", str(out / "onnx"), "--backend",
                              "onnx"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["cutout", *args, str(tiny_fast_weights), "-o", str(out / "torch")])
    onnx_alpha = np.asarray(Image.open(out / "onnx" / "a.png"), np.int16)
    torch_alpha = np.asarray(Image.open(out / "torch" / "a.png"), np.int16)
    assert np.abs(onnx_alpha - torch_alpha).max() <= 1
    res = runner.invoke(app, ["batch", str(photos), str(out / "batch"), "--backend", "onnx",
                              "--weights", str(onnx), "--format", "alpha"])
    assert res.exit_code == 0 and "2 done" in res.output, res.output
    assert np.abs(np.asarray(Image.open(out / "batch" / "a.png"), np.int16) - onnx_alpha).max() == 0



def test_serve_hands_the_editor_the_backend_and_device_asked_for(tmp_path, tiny_fast_weights,
                                                                monkeypatch):
    import uvicorn

    import shm.editor.app
    from shm.inference.devices import OnDevice
    from shm.inference.onnx import OnnxSHM

    served = []
    monkeypatch.setattr(shm.editor.app, "create_app", lambda matter, **kw: served.append(matter))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    onnx = tmp_path / "onnx"
    assert runner.invoke(app, ["export", "--onnx", str(onnx), "--weights",
                               str(tiny_fast_weights)]).exit_code == 0
    for options in (["--backend", "onnx", "--weights", str(onnx)],
                    ["--weights", str(tiny_fast_weights), "--device", "cpu", "--precision", "bf16"]):
        res = runner.invoke(app, ["serve", "--port", "0", *options])
        assert res.exit_code == 0, res.output
    assert isinstance(served[0].model, OnnxSHM)
    assert isinstance(served[1].model, OnDevice) and served[1].model.dtype == torch.bfloat16


@pytest.mark.parametrize("command", ["cutout", "batch"])
def test_wrong_folder_for_a_backend_is_one_sentence(photos, tmp_path, tiny_weights, command):
    onnx = tmp_path / "onnx"
    assert runner.invoke(app, ["export", "--onnx", str(onnx), "--weights",
                               str(tiny_weights)]).exit_code == 0
    target = [str(tmp_path / "out")] if command == "batch" else ["-o", str(tmp_path / "out")]
    cases = [([str(onnx)], "holds an ONNX export, not torch weights; use backend 'onnx'"),
             ([str(tiny_weights), "--backend", "onnx"], "holds torch weights, not an ONNX export"),
             ([str(tmp_path / "nowhere"), "--backend", "onnx"], "lacks tnet.onnx, mnet.onnx"),
             ([str(tiny_weights), "--backend", "tensorrt"], "Unknown backend 'tensorrt'")]
    for weights, message in cases:
        res = runner.invoke(app, [command, str(photos), *target, "--weights", *weights])
        assert res.exit_code in (1, 2) and message in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2


def test_export_help_names_options_that_exist():
    text = " ".join(runner.invoke(app, ["export", "-h"]).output.split())
    assert "use it with --backend onnx --weights DIR (cutout, batch, serve)" in text
    for command in ("cutout", "batch", "serve"):
        assert "--backend" in runner.invoke(app, [command, "-h"]).output


def test_rgba_over_a_background_says_why_it_is_opaque(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    res = runner.invoke(app, ["cutout", str(photos / "a.jpg"), "-o", str(out), "--background",
                              "red", "--weights", str(tiny_weights)])
    assert res.exit_code == 0
    assert "with --background the PNGs are opaque RGB, the subject over red" in res.output
    assert Image.open(out / "a.png").mode == "RGB"
    res = runner.invoke(app, ["cutout", str(photos / "a.jpg"), "-o", str(out), "--weights",
                              str(tiny_weights), "--overwrite"])
    assert "opaque" not in res.output and Image.open(out / "a.png").mode == "RGBA"


def test_an_empty_file_is_reported_as_empty(photos, tmp_path, tiny_weights):
    (photos / "zero.jpg").write_bytes(b"")
    res = runner.invoke(app, ["cutout", str(photos / "zero.jpg"), "-o", str(tmp_path / "out"),
                              "--weights", str(tiny_weights)])
    assert res.exit_code == 1 and "zero.jpg is empty (0 bytes)" in res.output


def test_a_large_photo_is_refused_without_pillows_warning(photos, tmp_path, tiny_weights):
    import warnings

    (photos / "big.png").write_bytes(zero_png(10000, 10000))  # 100 MP: past Pillow's warning
    with warnings.catch_warnings(record=True) as caught:  # what Python would print to stderr
        warnings.simplefilter("always")
        res = runner.invoke(app, ["cutout", str(photos / "big.png"), "-o", str(tmp_path / "out"),
                                  "--weights", str(tiny_weights)])
    assert res.exit_code == 1 and "100.0 MP, over the limit of 50 MP" in res.output
    assert not [w for w in caught if "DOS attack" in str(w.message)]
