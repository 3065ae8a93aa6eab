"""Refine edge (issue 19 item 3): closed-form matting of the soft edge under the stroke, against
known mattes and along the hair of val photos with reference alphas."""

import cv2
import numpy as np
import pytest
from PIL import Image

from shm.editor import tools
from shm.editor.matting import closed_form
from shm.editor.session import EditSession
from shm.editor.tools import refine_edge
from shm.inference.predictor import load_model
from tests.conftest import SHARED

PEOPLE = SHARED / "people"
# The 10 val photos with the most soft reference pixels (0.05 < alpha < 0.95) under a 30 px
# stroke along the top of the head (``_along_hair``); the next, the astronaut's helmet, is no hair.
HAIR = ["human_samples_in_stock_emotions_b_4",
        "U_2_Net_test_data_test_human_images_photo_1552374196_c4e7ffc6e126",
        "human_samples_in_stock_emotions_b_8", "openface_images_examples_lennon_2",
        "face_recognition_examples_knn_examples_train_alex_lacamoire_img1",
        "deepface_tests_unit_dataset_img3", "LivePortrait_assets_examples_source_s2",
        "U_2_Net_test_data_test_human_images_julia_trotti_17",
        "maxcapweb_athletes_baseball_celebration_163534", "deepface_tests_unit_dataset_img41"]


def _strands(h: int, w: int) -> np.ndarray:
    """(h, w) float32 in [0, 1]: a head's top edge with thin soft strands rising from it."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    alpha = np.clip((yy - h / 2) / 3 + 0.5, 0, 1)
    for x0 in range(6, w - 6, 9):
        strand = np.exp(-((xx - x0 - 0.15 * (yy - h / 2)) ** 2) / 1.5) * (yy > h / 2 - 14)
        alpha = np.maximum(alpha, 0.8 * strand)
    return alpha.astype(np.float32)


def _two_colours(alpha: np.ndarray) -> np.ndarray:
    """A photo of ``alpha`` over a plain background: (h, w, 3) uint8."""
    fg, bg = np.array([150, 90, 40]), np.array([60, 120, 200])
    return (alpha[..., None] * fg + (1 - alpha[..., None]) * bg + 0.5).astype(np.uint8)


def test_closed_form_recovers_a_matte_whose_colours_tell_it():
    """Over two plain colours alpha is linear in the colour: matted again from a blurred guess,
    the strands come back within 0.02 (uint8 rounding) everywhere."""
    true = _strands(48, 80)
    image = _two_colours(true)
    unknown = np.zeros(true.shape, bool)
    unknown[8:40, 2:-2] = True
    guess = np.where(unknown, cv2.GaussianBlur(true, (0, 0), 3), true)
    out = closed_form(image, guess, unknown)
    assert np.abs(guess - true)[unknown].max() > 0.3
    assert np.abs(out - true).max() < 0.02
    assert np.array_equal(out[~unknown], guess[~unknown])


def test_closed_form_matches_pymatting():
    """The same solution as pymatting's matting Laplacian over the whole image."""
    from pymatting import cf_laplacian
    from scipy.sparse.linalg import spsolve

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), (0, 0), 1)
    alpha = rng.random((40, 50)).astype(np.float32)
    unknown = np.zeros((40, 50), bool)
    unknown[10:30, 5:45] = True
    laplacian = cf_laplacian(image / 255.0, epsilon=1e-5).tocsr()
    u = unknown.ravel()
    known = alpha.ravel()[~u].astype(np.float64)
    want = spsolve(laplacian[u][:, u].tocsc(), -laplacian[u][:, ~u] @ known).clip(0, 1)
    assert np.abs(closed_form(image, alpha, unknown)[unknown] - want).max() < 1e-3


def test_refine_brings_strands_back_under_the_stroke_only():
    """A matte that lost the strands (the edge alone, blurred): Refine along it with an edge
    radius that reaches them lowers the SAD under the stroke by over 40% (closed-form matting
    alone: 90%; the mean with the guided filter that tempers it on photos keeps half of that);
    nothing changes off the stroke."""
    true = _strands(64, 96)
    image = _two_colours(true)
    current = cv2.GaussianBlur(np.clip((np.mgrid[:64, :96][0] - 32) / 3 + 0.5, 0, 1)
                               .astype(np.float32), (0, 0), 2)
    stroke = np.zeros(true.shape, bool)
    stroke[14:46, 10:70] = True
    out = refine_edge(image, current, stroke, radius=10)
    assert np.abs(out - true)[stroke].sum() < 0.6 * np.abs(current - true)[stroke].sum()
    assert np.array_equal(out[~stroke], current[~stroke])


def _along_hair(ref: np.ndarray) -> np.ndarray:
    """Points every 8 px along the reference outline (alpha 0.5) over the top of the head: the
    longest stretch of it within the top 12% of the person's height, off the frame."""
    hard = (ref > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)[:, 0, :]
    rows = np.flatnonzero(hard.any(1))
    w = ref.shape[1]
    top = (outline[:, 1] <= rows[0] + 0.12 * (rows[-1] - rows[0] + 1)) & (outline[:, 1] > 2) & \
        (outline[:, 0] > 2) & (outline[:, 0] < w - 3)
    start = np.flatnonzero(~top)[0]  # walk the closed outline from a point off the top
    top = np.roll(top, -start)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], top.astype(int), [0]])))
    first, last = max(zip(edges[::2], edges[1::2], strict=True), key=lambda r: r[1] - r[0])
    return np.roll(outline, -start, axis=0)[first:last:8].astype(float)


def _brush(shape: tuple[int, int], points: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    pts = np.round(points).astype(np.int32)
    cv2.polylines(mask, [pts], False, 1, size)
    for p in pts:
        cv2.circle(mask, (int(p[0]), int(p[1])), size // 2, 1, -1)
    return mask > 0


def test_refine_along_hair_lowers_the_sad_under_the_stroke_by_a_tenth():
    """Issue 19 item 3: a 30 px Refine stroke (default edge radius) along the hair on the top
    of the head lowers the SAD against the reference under the stroke by at least 10% on
    average over the HAIR photos (measured: 15%; the guided filter it replaced: 8%), raises it
    on none by more than 5% (measured: 2% on one), and changes nothing off the stroke."""
    if not (PEOPLE / "val.txt").is_file():
        pytest.skip("../shared/data/people is not here")
    shipped = load_model()
    falls = []
    for name in HAIR:
        image = np.asarray(Image.open(PEOPLE / "images" / f"{name}.jpg").convert("RGB"))
        ref = np.asarray(Image.open(PEOPLE / "alphas" / f"{name}.png").convert("L")) / 255.0
        points = _along_hair(ref)
        session = EditSession(shipped, image)
        before = session.canvas.alpha()[0, 0].numpy().copy()
        session.stroke("refine", 30, points.tolist())
        after = session.canvas.alpha()[0, 0].numpy()
        under = _brush(ref.shape, points, 30)
        sad_before, sad_after = (np.abs(a - ref)[under].sum() / 1000 for a in (before, after))
        falls.append(1 - sad_after / sad_before)
        print(f"{name}: SAD under the stroke {sad_before:.3f} -> {sad_after:.3f} "
              f"({falls[-1]:.1%} lower)")
        assert sad_after < 1.05 * sad_before, name
        near = cv2.dilate(under.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.array_equal(after[~near], before[~near]), name
    print(f"mean fall {np.mean(falls):.1%}")
    assert np.mean(falls) >= 0.10


def test_a_wide_stroke_on_a_big_photo_is_solved_at_a_bounded_cost(monkeypatch):
    """The strands 8x larger and a stroke 256 px wide: closed-form matting, too costly at full
    resolution (unknowns x band width^2 about 7e9: seconds), is solved at a lower scale within
    about ``SOLVE_COST``, and the refined edge is as good: SAD under the stroke over 40% lower
    (measured 46%), as at the small scale; nothing changes off the stroke."""
    solved = []

    def spy(image, alpha, unknown, *rest):
        width = 2 * cv2.distanceTransform(np.pad(unknown, 1).astype(np.uint8), cv2.DIST_L2, 3).max()
        solved.append(unknown.sum() * width ** 2)
        return closed_form(image, alpha, unknown, *rest)

    monkeypatch.setattr(tools, "closed_form", spy)
    true = cv2.resize(_strands(64, 96), (768, 512), interpolation=cv2.INTER_LINEAR)
    image = _two_colours(true)
    edge = np.clip((np.mgrid[:512, :768][0] - 256) / 24 + 0.5, 0, 1).astype(np.float32)
    current = cv2.GaussianBlur(edge, (0, 0), 16)
    stroke = np.zeros(true.shape, bool)
    stroke[112:368, 80:560] = True
    out = refine_edge(image, current, stroke, radius=80)
    assert len(solved) == 1 and solved[0] <= 1.25 * tools.SOLVE_COST  # rounding of the scale
    assert np.abs(out - true)[stroke].sum() < 0.6 * np.abs(current - true)[stroke].sum()
    assert np.array_equal(out[~stroke], current[~stroke])
