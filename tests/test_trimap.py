import numpy as np
import pytest

from shm import trimap as tri
from tests.conftest import person_alpha


def test_channel_order_is_background_unknown_foreground():
    assert tri.CHANNELS == ("background", "unknown", "foreground")
    assert (tri.BACKGROUND, tri.UNKNOWN, tri.FOREGROUND) == (0, 1, 2)
    assert tri.VALUES.tolist() == [0, 128, 255]


def test_uint8_round_trip():
    t = np.array([[0, 128, 255], [255, 0, 128]], np.uint8)
    assert (tri.to_uint8(tri.to_classes(t)) == t).all()
    assert tri.to_classes(np.array([[127, 129]], np.uint8)).tolist() == [[0, 2]]


def test_from_alpha_bands_the_soft_edge():
    alpha = person_alpha(100, 80)
    t = tri.from_alpha(alpha, width=3)
    assert set(np.unique(t)) == {0, 128, 255}
    soft = (alpha > 0) & (alpha < 255)
    assert (t[soft] == 128).all()
    assert (t[(t == 255)] == 255).all() and (alpha[t == 255] == 255).all()
    assert (alpha[t == 0] == 0).all()


def test_wider_band_has_more_unknown_pixels():
    alpha = person_alpha(100, 80)
    assert (tri.from_alpha(alpha, 6) == 128).sum() > (tri.from_alpha(alpha, 2) == 128).sum()


def test_hard_edge_gets_a_band():
    alpha = np.zeros((20, 20), np.uint8)
    alpha[5:15, 5:15] = 255
    t = tri.from_alpha(alpha, 1)
    assert t[10, 10] == 255 and t[0, 0] == 0 and t[5, 10] == 128 and t[4, 10] == 128


def test_zero_width_is_rejected():
    with pytest.raises(ValueError, match="at least 1"):
        tri.from_alpha(np.zeros((4, 4)), 0)
