"""Temperature scaling of the T-Net: the factor multiplies the logits, is fitted on training
photos, stored in config.json and loaded back."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from shm.config import ModelConfig, build_model
from shm.pretrained import load_pretrained
from shm.training.calibrate import calibration_photos, fit_logit_scale
from tests.conftest import TINY_FAST_CONFIG


def test_logit_scale_multiplies_the_t_nets_logits_and_keeps_its_ranking():
    torch.manual_seed(0)
    plain = build_model(ModelConfig.from_dict(TINY_FAST_CONFIG)).tnet.eval()
    sharp = build_model(ModelConfig.from_dict({**TINY_FAST_CONFIG, "tnet": {
        **TINY_FAST_CONFIG["tnet"], "logit_scale": 2.5}})).tnet.eval()
    sharp.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = plain(x), sharp(x)
    assert torch.allclose(b, 2.5 * a, atol=1e-5)
    assert torch.equal(a.argmax(1), b.argmax(1))
    assert (b.softmax(1).amax(1) >= a.softmax(1).amax(1) - 1e-6).all()  # surer everywhere


def test_calibration_uses_training_photos_from_both_sources_and_their_portraits(fake_data):
    names = (fake_data / "people/train.txt").read_text().split()
    (fake_data / "people/train.txt").write_text("\n".join([*names[:3], "ccp_0"]) + "\n")
    for sub, ext in (("images", "jpg"), ("alphas", "png")):
        (fake_data / "people" / sub / f"{names[3]}.{ext}").rename(
            fake_data / "people" / sub / f"ccp_0.{ext}")
    photos = calibration_photos(fake_data, 2)
    assert len(photos) == 4  # one per source, each also as a portrait
    whole, framed = photos[0], photos[1]
    assert framed[0].shape[:2] == framed[1].shape and framed[1].shape[0] < whole[1].shape[0]
    assert framed[1][-1].max() > 128  # the portrait is cut by its bottom edge


def test_fitting_scores_each_factor_and_writing_stores_the_best(fake_data, tiny_weights, tmp_path):
    photos = calibration_photos(fake_data, 2)
    sads = fit_logit_scale(tiny_weights, photos, grid=(1.0, 4.0))
    assert set(sads) == {1.0, 4.0} and sads[1.0] != sads[4.0]
    assert load_pretrained(tiny_weights).tnet.logit_scale == 1.0  # the folder is untouched
    folder = tmp_path / "w"
    folder.mkdir()
    for f in tiny_weights.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    res = subprocess.run([sys.executable, "-m", "shm.training.calibrate", "--weights", str(folder),
                          "--data", str(fake_data), "--photos", "2", "--write"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((folder / "calibration.json").read_text())
    best = min(report["sad_by_factor"], key=report["sad_by_factor"].get)
    assert report["logit_scale"] == pytest.approx(float(best))
    assert load_pretrained(folder).tnet.logit_scale == pytest.approx(float(best))
    assert np.isfinite(list(report["sad_by_factor"].values())).all()
