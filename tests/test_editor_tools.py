"""The editor's tools on real photos: refine edge against reference alphas, keep along a lost
edge, select subject on val people alone and in generated groups and on a
group photo, reset as an edit, and the change boxes the page fetches."""

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from shm.editor.session import DEFAULT_EDGE, EditError, EditSession
from shm.editor.tools import edge_band, refine_edge, split_subject
from shm.inference.predictor import load_model
from tests.conftest import SHARED, group_of_astronauts

PEOPLE = SHARED / "people"


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def _val_photos(count: int):
    if not (PEOPLE / "val.txt").is_file():
        pytest.skip("../shared/data/people is not here")
    for name in (PEOPLE / "val.txt").read_text().split()[:count]:
        image = np.asarray(Image.open(next((PEOPLE / "images").glob(f"{name}.*"))).convert("RGB"))
        ref = np.asarray(Image.open(next((PEOPLE / "alphas").glob(f"{name}.*"))).convert("L"))
        yield name, image, ref.astype(np.float32) / 255


# val photos of one person (the reference holds no one else), portraits to full length; in the
# last, someone's blurred shoulder joins his matte at the left edge
ALONE = ["ControlNet_test_imgs_man", "LivePortrait_assets_examples_source_s2",
         "PhotoMaker_examples_scarletthead_woman_scarlett_2", "ccp_0050", "ccp_0170", "ccp_0226",
         "ccp_0287", "ccp_0546", "ccp_0718", "ccp_1105", "ccp_1321", "darknet_person",
         "deepface_tests_unit_dataset_img39",
         "face_recognition_examples_knn_examples_train_obama_obama2"]


def _val(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(next((PEOPLE / "images").glob(f"{name}.*"))).convert("RGB"))
    ref = np.asarray(Image.open(next((PEOPLE / "alphas").glob(f"{name}.*"))).convert("L"))
    return image, ref.astype(np.float32) / 255


def _along_edge(ref: np.ndarray, seed: int) -> np.ndarray:
    """Points every 10 px along 150 px of the reference's outline (alpha 0.5)."""
    contours, _ = cv2.findContours((ref > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)[:, 0, :]
    start = np.random.default_rng(seed).integers(len(outline) - 150)
    return outline[start:start + 150:10].astype(float)


def _stroke_mask(shape, points, size) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    pts = np.round(points).astype(np.int32)
    cv2.polylines(mask, [pts], False, 1, size)
    for p in pts:
        cv2.circle(mask, tuple(int(v) for v in p), size // 2, 1, -1)
    return mask > 0


def test_refine_along_the_true_edge_improves_it_on_val_photos(shipped):
    """On the first 4 val photos, a 24 px refine stroke (default edge radius) along a stretch
    of the reference outline, hair or not, lowers the SAD under the stroke on average and
    raises it on none by more than 10% (the jeans against grass of a small photo: 7% higher,
    the others 13-22% lower); where the reference is 1 (0) alpha goes down (up) by at most 0.02
    on average; alpha moves only under the stroke, within the edge radius of the matte's edge.
    (Along hair: tests/test_refine_edge.py.)"""
    falls = []
    for i, (name, image, ref) in enumerate(_val_photos(4)):
        session = EditSession(shipped, image)
        before = session.canvas.alpha()[0, 0].numpy().copy()
        points = _along_edge(ref, seed=i)
        session.stroke("refine", 24, points.tolist())
        after = session.canvas.alpha()[0, 0].numpy()
        under = _stroke_mask(ref.shape, points, 24)
        sad_before = np.abs(before - ref)[under].sum()
        sad_after = np.abs(after - ref)[under].sum()
        print(f"{name}: SAD under the stroke {sad_before / 1000:.3f} -> {sad_after / 1000:.3f}")
        falls.append(1 - sad_after / sad_before)
        assert sad_after < 1.1 * sad_before, name
        assert (before - after)[under & (ref == 1)].mean() <= 0.02, name
        assert (after - before)[under & (ref == 0)].mean() <= 0.02, name
        near = cv2.dilate(under.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.array_equal(after[~near], before[~near])  # nothing moves off the stroke
        far = ~edge_band(before, DEFAULT_EDGE)
        assert np.array_equal(after[far], before[far]), name
    assert np.mean(falls) > 0


def _keep_over_a_lost_edge(shipped, image: np.ndarray, ref: np.ndarray, seed: int, force=False
                           ) -> tuple[float, float, float]:
    """Erase a 40 px stroke along 150 px of the person's outline, its centre 8 px inside (the
    matte lost that part of them: a ghosted limb), then Keep along the same line. Returns the
    share of the background under the brush (reference < 0.05, over 4 px from its edge) at 0.1
    or more, that background's mean alpha, and the person's there (reference > 0.95)."""
    inset = cv2.erode((ref > 0.5).astype(np.uint8), np.ones((17, 17), np.uint8))
    contours, _ = cv2.findContours(inset, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)[:, 0, :]
    h, w = ref.shape
    inside = (outline.min(1) >= 40) & (outline[:, 0] < w - 40) & (outline[:, 1] < h - 40)
    runs = [i for i in range(len(outline) - 150) if inside[i:i + 150].all()]  # off the frame
    start = runs[np.random.default_rng(seed).integers(len(runs))]
    points = outline[start:start + 150:10].astype(float).tolist()
    session = EditSession(shipped, image)
    session.stroke("erase", 40, points)
    session.stroke("keep", 40, points, force=force)
    alpha = session.canvas.alpha()[0, 0].numpy()
    under = _stroke_mask(ref.shape, np.array(points), 40)
    edge = cv2.morphologyEx((ref > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    far = cv2.dilate(edge, np.ones((9, 9), np.uint8)) == 0
    background, person = under & far & (ref < 0.05), under & far & (ref > 0.95)
    assert background.sum() > 100 and person.sum() > 100
    return ((alpha[background] >= 0.1).mean(), alpha[background].mean(), alpha[person].mean())


def test_keep_adds_the_person_under_the_brush_not_the_background(shipped):
    """Issue 19 item 2: after Keep over a lost part of the person plus the background beside
    it, that background stays below 0.1 (at most 5% of its pixels at 0.1 or more, mean below
    0.05) while the person comes back (mean alpha 0.8 or more); on the astronaut and 6 val
    photos. Shift (force) keeps the background too, as before."""
    from tests.conftest import astronaut

    photo = astronaut()
    ref = load_model().predict(photo).alpha
    cases = [("astronaut", photo, (ref > 0.5).astype(np.float32))]
    if (PEOPLE / "val.txt").is_file():
        cases += [(name, *_val(name)) for name in ALONE[::2][:6]]
    for i, (name, image, ref) in enumerate(cases):
        stray, mean, person = _keep_over_a_lost_edge(shipped, image, ref, seed=i)
        print(f"{name}: background >= 0.1: {stray:.1%} (mean {mean:.3f}), person {person:.3f}")
        assert stray <= 0.05 and mean < 0.05 and person >= 0.8, name
    stray, mean, person = _keep_over_a_lost_edge(shipped, *cases[0][1:], seed=0, force=True)
    assert stray > 0.9 and person > 0.9


def test_refine_leaves_solid_regions_and_far_background_alone():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    alpha = np.zeros((64, 64), np.float32)
    alpha[:, :32] = 1
    stroke = np.ones((64, 64), bool)
    new = refine_edge(image, alpha, stroke, radius=4)
    assert np.array_equal(new[:, :27], alpha[:, :27]) and np.array_equal(new[:, 37:], alpha[:, 37:])
    assert new.dtype == np.float32 and new.min() >= 0 and new.max() <= 1


@pytest.fixture(scope="module")
def group():
    return group_of_astronauts()


def _torso(ref: np.ndarray) -> list[float]:
    """Where a person clicks: the point furthest inside the upper half of the reference."""
    inside = ref > 0.5
    rows = np.flatnonzero(inside.any(1))
    inside[(rows[0] + rows[-1]) // 2:] = False
    r, c = np.unravel_index(np.argmax(ndimage.distance_transform_edt(inside)), inside.shape)
    return [c + 0.5, r + 0.5]


def _line_up(people: list[tuple[np.ndarray, np.ndarray]], gaps: list[float],
             background: np.ndarray, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A group photo: the people (photo, reference alpha) cut out, scaled to ``height`` and
    stood left to right over ``background``, ``gaps[i]`` of person i + 1's width between
    person i and i + 1 (negative: the later one in front, overlapping). Returns the photo
    (H, W, 3) uint8 and each person's visible alpha (K, H, W) float32."""
    cuts = []
    for image, ref in people:
        rows, cols = np.flatnonzero((ref > 0.02).any(1)), np.flatnonzero((ref > 0.02).any(0))
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        size = (round((cols[-1] - cols[0] + 1) * height / (rows[-1] - rows[0] + 1)), height)
        cuts.append((cv2.resize(image[box], size, interpolation=cv2.INTER_AREA).astype(np.float32),
                     cv2.resize(ref[box], size, interpolation=cv2.INTER_AREA)))
    lefts = [40]
    for (_, a), gap, (_, b) in zip(cuts, gaps, cuts[1:], strict=False):
        lefts.append(lefts[-1] + a.shape[1] + round(gap * b.shape[1]))
    shape = (height + 40, lefts[-1] + cuts[-1][1].shape[1] + 40)
    photo = cv2.resize(background, shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    layers = np.zeros((0, *shape), np.float32)
    for (colour, a), left in zip(cuts, lefts, strict=True):
        layer = np.zeros(shape, np.float32)
        layer[40:, left:left + a.shape[1]] = a
        photo[40:, left:left + a.shape[1]] += (colour - photo[40:, left:left + a.shape[1]]) * a[..., None]
        layers = np.concatenate([layers * (1 - layer), layer[None]])
    return photo.clip(0, 255).astype(np.uint8), layers


def _kept_after_select(shipped, photo: np.ndarray, refs: np.ndarray, k: int,
                       click: list[float] | None = None) -> tuple[float, float]:
    """Share of person k's alpha, and of everyone else's, that Select subject keeps when person
    k is clicked at ``click`` (default: on the torso)."""
    session = EditSession(shipped, photo)
    before = session.canvas.alpha()[0, 0].numpy().copy()
    try:
        session.select([click or _torso(refs[k])])
    except EditError as e:  # a cutout of the person alone: select has nothing to take away
        assert str(e).startswith("Nothing to remove: only the selected subject"), e
    after = session.canvas.alpha()[0, 0].numpy()
    others = np.delete(refs, k, axis=0)
    kept = (after * refs[k]).sum() / (before * refs[k]).sum()
    return float(kept), float((after * others).sum() / max((before * others).sum(), 1e-6))


@pytest.mark.parametrize("name", ALONE)
def test_select_subject_keeps_a_person_alone_whole_on_val_photos(shipped, name):
    """Issue 19 item 1: clicked on the torso, a person alone keeps at least 98% of their matte
    (hands, feet, hair) on each of 14 val photos."""
    if not (PEOPLE / "val.txt").is_file():
        pytest.skip("../shared/data/people is not here")
    image, ref = _val(name)
    kept, _ = _kept_after_select(shipped, image, ref[None], 0)
    assert kept >= 0.98, f"{name}: kept {kept:.3f}"


@pytest.mark.parametrize("names, gaps", [
    (["ccp_1226", "ccp_1027", "ccp_1675"], [-0.04, 0.0]),
    (["ccp_1303", "ccp_0010", "ccp_0775"], [0.02, -0.01]),
    (["ccp_0860", "ccp_0966"], [-0.01]),
    (["ccp_1671", "ccp_1378"], [0.0]),
    (["ccp_1966", "ccp_1640"], [-0.03]),
])
def test_select_subject_keeps_one_of_a_group_on_val_people(shipped, names, gaps):
    """Issue 19 item 1: val people stood side by side, touching or just overlapping, over a
    background photo; clicking each on the torso keeps at least 98% of their matte and at most
    2% of the others'."""
    backgrounds = SHARED / "backgrounds"
    if not (PEOPLE / "val.txt").is_file() or not backgrounds.is_dir():
        pytest.skip("../shared/data is not here")
    background = np.asarray(Image.open(sorted(backgrounds.iterdir())[len(names)]).convert("RGB"))
    photo, refs = _line_up([_val(n) for n in names], gaps, background)
    for k in range(len(names)):
        kept, others = _kept_after_select(shipped, photo, refs, k)
        print(f"{names[k]}: kept {kept:.3f}, others {others:.3f}")
        assert kept >= 0.98 and others <= 0.02, names[k]


@pytest.mark.parametrize("k, click", [(0, None), (1, None), (0, [120, 400]), (1, [520, 300])])
def test_select_subject_splits_two_overlapping_copies_of_one_person(shipped, group, k, click):
    """Issue 19 item 1 on the generated group photo (two copies of the astronaut in the same
    suit, one in front, holding a helmet the matte joins to her faintly): clicked on the head
    or the chest, each keeps at most 2% of the other's matte, the one behind at least 98% of
    her own and the one in front at least 97.5%. (The fixture is cut with the shipped model:
    about 0.8% of the front copy's matte is a dark patch at her copy's left edge, the corner of
    the astronaut photo the model keeps, pasted on the other's arm with no outline between.)"""
    photo, behind, front = group
    kept, others = _kept_after_select(shipped, photo, np.stack([behind, front]), k, click)
    assert kept >= (0.98, 0.975)[k] and others <= 0.02, (kept, others)


def test_select_subject_keeps_one_of_two_overlapping_people(shipped, group):
    """Two copies of one person in an orange suit, one in front: clicking the one behind keeps
    her and drops the one in front, forearm against the other's suit included; shift-clicking
    the one in front drops her alone."""
    photo, behind, front = group
    session = EditSession(shipped, photo)
    auto = session.canvas.alpha()[0, 0].numpy().copy()
    assert auto[front > 0.9].mean() > 0.9 and auto[behind > 0.9].mean() > 0.9
    change = session.select([[120, 400]])  # the torso of the one behind
    alpha = session.canvas.alpha()[0, 0].numpy()
    assert alpha[behind > 0.9].mean() > 0.9
    assert alpha[front > 0.9].mean() < 0.05
    assert "removed" in change.note and "% of the cutout" in change.note
    session.undo()
    assert np.array_equal(session.canvas.alpha()[0, 0].numpy(), auto)

    change = session.select([[520, 300]], remove=True)  # shift-click the one in front
    alpha = session.canvas.alpha()[0, 0].numpy()
    assert alpha[front > 0.9].mean() < 0.05
    assert alpha[behind > 0.9].mean() > 0.9
    assert change.note.startswith("Removed the person under the cursor")


def test_reset_is_an_edit_that_undo_takes_back(shipped, group):
    photo = group[0][:256, :320]
    session = EditSession(shipped, photo)
    auto = session.alpha_u8()
    session.stroke("erase", 20, [[100, 150], [200, 150]])
    session.stroke("keep", 10, [[10, 10]])
    edited = session.alpha_u8()
    change = session.reset()
    assert session.version == 3 and session.can_undo and not session.can_redo
    assert np.array_equal(session.alpha_u8(), auto)
    top, left, bottom, right = change.box
    assert not (edited != auto)[:top].any() and not (edited != auto)[bottom:].any()
    assert not (edited != auto)[:, :left].any() and not (edited != auto)[:, right:].any()
    session.undo()
    assert np.array_equal(session.alpha_u8(), edited)
    session.redo()
    assert np.array_equal(session.alpha_u8(), auto)
    replayed = EditSession(shipped, photo)
    replayed.replay(session.ops, session.version)
    assert np.array_equal(replayed.alpha_u8(), auto)


@pytest.mark.parametrize("edit", [
    lambda s: s.stroke("erase", 16, [[170, 60], [280, 80]]),
    lambda s: s.stroke("keep", 9, [[300, 20]]),
    lambda s: s.stroke("refine", 30, [[155, 40], [160, 120]], edge=10),
    lambda s: s.undo(),
])
def test_alpha_changes_only_inside_the_box_an_edit_returns(shipped, group, edit):
    session = EditSession(shipped, group[0][:200, :360])
    session.stroke("erase", 12, [[200, 100], [260, 140]])
    before = session.alpha_u8()
    top, left, bottom, right = edit(session).box
    changed = session.alpha_u8() != before
    assert changed.any()
    inside = np.zeros_like(changed)
    inside[top:bottom, left:right] = True
    assert not (changed & ~inside).any()
    assert np.array_equal(session.alpha_u8((top, left, bottom, right)),
                          session.alpha_u8()[top:bottom, left:right])


def test_keep_and_erase_rerun_the_mnet_near_the_stroke_only(shipped, group, monkeypatch):
    """Re-running the M-Net only on cells within REACH px of a stroke is close to re-running it
    on every cell whose window sees the stroke (exact): same alpha to within 0.1 anywhere."""
    from shm.editor import session as module

    photo = group[0][:300, :400]
    results = []
    for reach in (shipped.tiles.margin, module.REACH):
        monkeypatch.setattr(module, "REACH", reach)
        session = EditSession(shipped, photo)
        session.stroke("erase", 20, [[150, 60], [290, 120]])
        session.stroke("keep", 16, [[330, 150], [380, 260]])
        results.append(session.canvas.alpha()[0, 0].numpy())
    exact, near = results
    assert np.abs(exact - near).max() < 0.1 and np.abs(exact - near).mean() < 1e-3


def test_select_subject_keeps_a_detached_hand_and_drops_a_faint_ghost():
    """A person whose hand the matte holds apart from the arm (a 3 px gap), and a faint blob
    (alpha 0.3) of someone behind, 40 px off: clicking the torso keeps the hand, drops the ghost."""
    h, w = 300, 300
    yy, xx = np.mgrid[:h, :w]
    alpha = np.zeros((h, w), np.float32)
    alpha[((yy - 60) / 25) ** 2 + ((xx - 110) / 20) ** 2 <= 1] = 1  # head
    alpha[((yy - 190) / 100) ** 2 + ((xx - 110) / 45) ** 2 <= 1] = 1  # body
    hand = ((yy - 200) / 10) ** 2 + ((xx - 168) / 10) ** 2 <= 1  # 3 px right of the body
    alpha[hand] = 1
    ghost = ((yy - 150) / 40) ** 2 + ((xx - 250) / 15) ** 2 <= 1
    alpha[ghost] = 0.3
    image = np.dstack([(alpha * 200).astype(np.uint8)] * 3)
    drop, _ = split_subject(image, alpha, np.array([[110.0, 170.0]]))
    assert not drop[hand].any() and not drop[alpha == 1].any()
    assert drop[ghost].all()
