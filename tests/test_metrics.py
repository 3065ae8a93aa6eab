import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from shm import metrics
from tests.conftest import SHARED

REF = SHARED / "metrics-reference"
# Where ../shared exists (this layout, CI) the reference cases must be there: a missing or
# moved reference.json fails these tests instead of skipping them. Only a clone without
# ../shared skips them.
HAVE_SHARED = SHARED.parent.is_dir()
CASES = (sorted(k for k in json.loads((REF / "reference.json").read_text()) if k != "convention")
         if (REF / "reference.json").is_file() else ["reference.json is missing"])


def _load(name, kind):
    return np.asarray(Image.open(REF / f"{name}_{kind}.png"))


@pytest.mark.skipif(not HAVE_SHARED, reason="no ../shared beside this clone")
@pytest.mark.parametrize("name", CASES)
def test_matches_reference_code(name):
    assert (REF / "reference.json").is_file(), f"{REF}/reference.json is missing"
    ref = json.loads((REF / "reference.json").read_text())[name]
    p, g, t = _load(name, "pred"), _load(name, "gt"), _load(name, "trimap")
    got = {"sad": metrics.sad(p, g, t), "mse": metrics.mse(p, g, t),
           "grad": metrics.grad(p, g, t) * 1000, "conn": metrics.conn(p, g, t) * 1000}
    for key, value in got.items():
        if np.isnan(ref[key]):
            assert np.isnan(value), key
        else:
            assert value == pytest.approx(ref[key], rel=1e-5, abs=0), key


@pytest.mark.skipif(not HAVE_SHARED, reason="no ../shared beside this clone")
def test_reference_quirks_are_exercised():
    assert {"twins64_offset", "disc320_emptyunknown", "hair150_noise"} <= set(CASES)


def test_float_inputs_are_quantised_like_uint8():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    g = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    t = np.full((40, 50), 128, np.uint8)
    for fn in (metrics.sad, metrics.mse, metrics.grad, metrics.conn):
        assert fn(p / 255.0, g / 255.0, t) == fn(p, g, t)


def test_whole_image_metrics_known_values():
    p = np.zeros((10, 20), np.uint8)
    g = np.full((10, 20), 255, np.uint8)
    g[:5] = 0  # half the pixels differ by 1
    assert metrics.sad_whole(p, g) == pytest.approx(100 / 1000)
    assert metrics.mse_whole(p, g) == pytest.approx(0.5)
    assert metrics.mad_whole(p, g) == pytest.approx(0.5)


def test_evaluate_without_trimap_gives_none():
    a = np.zeros((8, 8), np.uint8)
    out = metrics.evaluate(a, a)
    assert out["sad"] is None and out["conn"] is None and out["sad_whole"] == 0


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 4), 1.5), "in \\[0, 1\\]"),
    (np.zeros((4, 5), np.uint8), "same size"),
    (np.zeros((2, 2, 2, 2), np.uint8), "alpha matte"),
])
def test_bad_inputs_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        metrics.sad(bad, np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8))


mattes = arrays(np.uint8, (12, 14), elements=st.integers(0, 255))
trimaps = arrays(np.uint8, (12, 14), elements=st.sampled_from([0, 127, 128, 255]))


@settings(max_examples=40, deadline=None)
@given(mattes, trimaps)
def test_identical_prediction_scores_zero(a, t):
    out = metrics.evaluate(a, a, t)
    for key in ("sad", "grad", "conn", "sad_whole", "mse_whole", "mad_whole"):
        assert out[key] == 0, key
    assert out["mse"] == 0 or ((t != 128).all() and np.isnan(out["mse"]))


@settings(max_examples=40, deadline=None)
@given(mattes, mattes, trimaps)
def test_sad_and_mse_are_symmetric(a, b, t):
    assert metrics.sad(a, b, t) == metrics.sad(b, a, t)
    assert metrics.sad_whole(a, b) == metrics.sad_whole(b, a)
    m1, m2 = metrics.mse(a, b, t), metrics.mse(b, a, t)
    assert m1 == m2 or (np.isnan(m1) and np.isnan(m2))


@settings(max_examples=40, deadline=None)
@given(mattes, mattes, trimaps, mattes)
def test_pixels_outside_unknown_region_do_not_count_for_sad_and_mse(a, b, t, noise):
    known = t != 128
    b2 = np.where(known, noise, b)
    assert metrics.sad(a, b2, t) == metrics.sad(a, b, t)
    m1, m2 = metrics.mse(a, b2, t), metrics.mse(a, b, t)
    assert m1 == m2 or (np.isnan(m1) and np.isnan(m2))


def test_pixels_outside_unknown_region_do_not_count_for_grad_and_conn():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    t = np.zeros((30, 30), np.uint8)
    a[0, 0], a[0, 1] = 0, 255  # fix min and max so mat2gray is unchanged
    b = a.copy()
    b[20:, 20:] = 0   # changed far (> 4 px filter radius) from the unknown region ...
    t[:8, :8] = 128   # ... which is here
    assert metrics.grad(a, b, t) == metrics.grad(a, a, t) == 0
    c = a.copy()
    c[:8, :8] = rng.integers(0, 256, (8, 8))
    assert metrics.sad(c, a, t) > 0  # the region does count


@pytest.mark.parametrize("width", [1, 2, 5])
def test_ground_truth_trimap_band_is_exactly_width_pixels_each_side(width):
    """The evaluation (bench/quality.py) and training trimaps: the unknown band around a hard
    horizontal edge between rows 9 and 10 covers rows 9 - width to 10 + width, no more, no less."""
    from shm import trimap

    alpha = np.zeros((30, 20), np.uint8)
    alpha[10:] = 255
    t = trimap.from_alpha(alpha, width)
    unknown_rows = np.flatnonzero((t == 128).all(1))
    assert unknown_rows.tolist() == list(range(9 - width, 11 + width))
    assert ((t == 128).any(1) == (t == 128).all(1)).all()  # whole rows only
    assert (t[:9 - width] == 0).all() and (t[11 + width:] == 255).all()
