"""Augmentation keeps labels exact: photometric changes leave the alpha, geometric ones move it
with the image, occluders cut it, several people take the union."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from shm import trimap as tri
from shm.data import augment as aug
from shm.data.people import PeopleMatting, SampleSpec, source_of
from tests.conftest import person_alpha


def _person(h=120, w=90):
    return person_alpha(h, w).astype(np.float32) / 255


def test_paste_takes_the_union_of_people_and_cuts_under_an_occluder():
    image, alpha = np.zeros((4, 4, 3), np.float32), np.full((4, 4), 0.5, np.float32)
    layer = np.full((2, 2), 0.5, np.float32)
    white = np.ones((2, 2, 3), np.float32)
    img2, a2 = aug.paste(image, alpha, white, layer, 1, 3)  # half outside the canvas
    assert a2[1, 3] == pytest.approx(0.75) and a2[0, 3] == 0.5 and a2[1, 2] == 0.5
    assert img2[1, 3, 0] == pytest.approx(0.5) and img2[1, 2, 0] == 0
    _, a3 = aug.paste(image, alpha, white, layer, 0, 0, occludes=True)
    assert a3[0, 0] == pytest.approx(0.25) and a3[3, 3] == 0.5
    assert alpha[1, 3] == 0.5  # inputs untouched


def test_occluder_only_lowers_the_alpha_and_paints_where_it_lowered():
    alpha = _person()
    image = np.zeros((*alpha.shape, 3), np.float32)
    texture = np.ones((50, 50, 3), np.float32)
    lowered = 0
    for seed in range(8):
        img, a = aug.occluder(image, alpha, texture, np.random.default_rng(seed))
        assert (a <= alpha + 1e-6).all()
        changed = np.abs(img).sum(2) > 1e-6
        assert not (changed & (alpha > 0.99) & (np.abs(a - alpha) < 1e-6)).any()
        lowered += (a < alpha - 0.5).sum() > 0
    assert lowered >= 6


def test_rotation_moves_image_and_alpha_alike():
    alpha = _person()
    image = np.repeat(alpha[..., None], 3, 2)
    img, a = aug.rotate(image, alpha, 12.0)
    assert np.abs(img[..., 0] - a).max() < 1e-5
    assert np.abs(a - alpha).max() > 0.5  # it did rotate


def test_head_obscuring_changes_only_pixels_over_the_head():
    alpha = _person(160, 100)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (*alpha.shape, 3)).astype(np.float32)
    (cx, cy), (ax, ay) = aug.head_region(alpha)
    rows = np.flatnonzero((alpha > 0.5).any(1))
    assert rows[0] <= cy <= rows[0] + 0.4 * (rows[-1] - rows[0])
    for seed in range(4):
        out = aug.obscure_head(image, alpha, np.random.default_rng(seed))
        changed = np.abs(out - image).max(2) > 1e-6
        ys, xs = np.nonzero(changed)
        assert changed.sum() > 0.3 * np.pi * ax * ay
        assert (((xs - cx) / (ax + 1)) ** 2 + ((ys - cy) / (ay + 1)) ** 2 <= 1.05).all()
    assert aug.obscure_head(image, np.zeros_like(alpha), rng) is image


def test_head_region_sits_over_the_head_wherever_the_person_stands():
    alpha = np.zeros((200, 300), np.float32)
    alpha[20:190, 200:240] = 1
    (cx, cy), (ax, _) = aug.head_region(alpha)
    assert 200 <= cx <= 240 and 20 <= cy <= 80 and ax <= 30


def test_person_blur_leaves_the_far_background_alone():
    alpha = np.zeros((200, 200), np.float32)
    alpha[60:140, 80:120] = 1
    image = np.random.default_rng(0).uniform(0, 1, (200, 200, 3)).astype(np.float32)
    out = aug.blur_people(image, alpha, np.random.default_rng(1))
    assert np.abs(out - image)[:20].max() == 0
    assert np.abs(out - image)[70:130, 90:110].mean() > 0.05


def test_photometric_chain_is_seeded_and_keeps_shape_and_range():
    chain = aug.photometric()
    image = np.random.default_rng(0).uniform(0, 1, (64, 48, 3)).astype(np.float32)
    outs = [aug.jitter_photometric(chain, image, np.random.default_rng(s)) for s in (5, 5, 6)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
    assert np.array_equal(outs[0], outs[1])
    changed = [not np.allclose(aug.jitter_photometric(chain, image, np.random.default_rng(s)), image)
               for s in range(10)]
    assert sum(changed) >= 7


def _white_people_on_black(root):
    """Make every photo its own alpha (white people on black) and every background black: a
    clean composite is then its alpha."""
    for path in (root / "people/images").glob("*.jpg"):
        alpha = np.asarray(Image.open(root / "people/alphas" / f"{path.stem}.png"))
        Image.fromarray(np.repeat(alpha[..., None], 3, 2)).save(path, quality=100)
    for path in (root / "backgrounds").glob("*.jpg"):
        Image.fromarray(np.zeros((*Image.open(path).size[::-1], 3), np.uint8)).save(path)


@pytest.mark.parametrize("real", [0.0, 1.0])
def test_scene_samples_show_their_own_alpha(fake_data, real):
    """With crowds, small people, rotation and flips but no photometric change, every pixel of
    the image is its label (white people on black): the alpha moved with the image exactly."""
    _white_people_on_black(fake_data)
    cfg = aug.AugmentConfig(photometric=0, person_blur=0, head=0, occluder=0, crowd=1, small=0.5,
                            rotate=1)
    data = PeopleMatting(fake_data, "train", SampleSpec("tnet", 96, (80, 120), real=real,
                                                        augment=cfg))
    crowds = 0
    for i in range(len(data)):
        item = data[i]
        assert set(item) == {"image", "alpha", "trimap"}
        assert item["image"].shape == (3, 96, 96) and item["trimap"].shape == (96, 96)
        image, alpha = item["image"].numpy(), item["alpha"][0].numpy()
        error = np.abs(image[0] - alpha)  # a shift of one pixel would give errors near 1
        assert error.max() < 0.08 and error.mean() < 0.005  # JPEG photos, estimated foreground
        trimap = item["trimap"].numpy()
        assert (alpha[trimap == tri.FOREGROUND] > 0.99).all()
        assert (alpha[trimap == tri.BACKGROUND] < 0.01).all()
        crowds += alpha.sum() > 0
    assert crowds == len(data)


def test_scene_samples_are_reproducible_and_change_with_the_epoch(fake_data):
    spec = SampleSpec("tnet", 64, (60, 90), real=0.5, augment=aug.AugmentConfig())
    a, b = PeopleMatting(fake_data, "train", spec, seed=1), PeopleMatting(fake_data, "train", spec, seed=1)
    assert all(a[i]["image"].equal(b[i]["image"]) for i in range(len(a)))
    first = a[0]["image"]
    a.set_epoch(1)
    assert not a[0]["image"].equal(first)


@pytest.mark.parametrize("portrait, close_up", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
@pytest.mark.parametrize("mode", ["tnet", "mnet", "refine"])
def test_every_sample_mode_shows_its_own_alpha(fake_data, mode, portrait, close_up):
    """White people on black, each photo its own background: every pixel of the plain
    samplers' images (and of the refine mode's T-Net view) is its label. A crop, flip or scale
    that moved fg and bg but not alpha would leave errors near 1."""
    _white_people_on_black(fake_data)
    spec = SampleSpec(mode, 64, (60, 90), real=1.0, view=64, portrait=portrait, close_up=close_up)
    data = PeopleMatting(fake_data, "train", spec)
    shown = 0
    for epoch in range(2):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            image, alpha = item["image"].numpy(), item["alpha"][0].numpy()
            error = np.abs(image - alpha).max(0)
            assert error.max() < 0.2 and error.mean() < 0.02, (epoch, i)  # JPEG, estimated fg
            shown += alpha.max() > 0.5
            if mode == "refine":
                th, tw = item["geometry"][:2].tolist()
                view, classes = item["view"][0, :th, :tw].numpy(), item["view_trimap"].numpy()
                assert (view[classes[:th, :tw] == tri.FOREGROUND] > 0.9).all()
                assert (view[classes[:th, :tw] == tri.BACKGROUND] < 0.1).all()
                assert (classes[th:] == -100).all() and (classes[:, tw:] == -100).all()
    assert shown >= 1.3 * len(data)  # most crops show the person: the check is not empty


def test_refine_samples_show_small_people_in_wide_scenes_with_their_own_alpha(fake_data):
    """Augmented 'refine' composites with small people on (no camera effects): the person
    fills at most half the T-Net view's height, and the view and the crop are their labels
    (up to the colour jitter's gain on the white people, measured on the solid pixels)."""
    _white_people_on_black(fake_data)
    cfg = aug.AugmentConfig(photometric=0, person_blur=0, head=0, small=1)
    data = PeopleMatting(fake_data, "train", SampleSpec("refine", 64, view=96, augment=cfg))
    fills = []
    for i in range(len(data)):
        item = data[i]
        image, alpha = item["image"].numpy(), item["alpha"][0].numpy()
        assert alpha.max() > 0.99, i  # the crop is on the small person's edge
        gain = image[:, alpha > 0.99].mean(1)
        assert np.abs(image / gain[:, None, None] - alpha).max() < 0.2, i  # JPEG, estimated fg
        th, tw = item["geometry"][:2].tolist()
        view, classes = item["view"][:, :th, :tw].numpy(), item["view_trimap"][:th, :tw].numpy()
        assert (view[:, classes == tri.FOREGROUND] > 0.6).all()
        assert (view[:, classes == tri.BACKGROUND] < 0.1).all()
        rows = np.flatnonzero((classes != tri.BACKGROUND).any(1))
        fills.append((rows[-1] - rows[0] + 1) / th)
    assert max(fills) <= 0.55 and min(fills) >= 0.1


def test_portrait_frames_cut_the_person_at_the_bottom_and_keep_the_head():
    alpha = np.zeros((400, 300), np.float32)
    alpha[50:390, 110:190] = 1  # a standing person, head at row 50
    alpha[60:100, 20:40] = 1  # someone small at the side
    cuts, fills = 0, []
    for seed in range(40):
        top, left, h, w = aug.portrait_box(alpha, np.random.default_rng(seed), (0.75, 1.33))
        assert 0 <= top and top + h <= 400 and 0 <= left and left + w <= 300
        assert 0.74 <= w / h <= 1.34 or w == 300
        frame = alpha[top:top + h, left:left + w]
        assert frame[-1].max() == 1  # cut by the bottom edge
        span = (top + h) - 50
        assert 50 + 0.2 * 340 <= top + h <= 50 + 0.66 * 340
        fills.append(span / h)
        cuts += frame[:, 0].max() == 1 or frame[:, -1].max() == 1
    assert min(fills) < 0.8 and max(fills) > 1.0  # room above the head, and the head cut
    assert cuts >= 5  # often cut by a side too
    assert aug.portrait_box(np.zeros((50, 50), np.float32), np.random.default_rng(0)) is None


def test_close_up_frames_end_at_the_chin_or_neck_and_fill_the_frame_with_the_head():
    alpha = np.zeros((400, 300), np.float32)
    alpha[50:390, 110:190] = 1  # a standing person, head at row 50, 340 px tall
    bottoms, fills = [], []
    for seed in range(40):
        top, left, h, w = aug.portrait_box(alpha, np.random.default_rng(seed), close_up=1.0)
        assert alpha[top:top + h, left:left + w][-1].max() == 1  # cut by the bottom edge
        bottoms.append((top + h - 50) / 340)
        fills.append((top + h - max(top, 50)) / h)
    assert 0.1 <= min(bottoms) and max(bottoms) <= 0.221  # chin to neck, never the chest
    assert max(fills) == 1.0 and sum(f == 1.0 for f in fills) >= 10  # the head often cut
    alpha[50:390, 40:260] = 1  # a portrait photo's person, wider than a standing figure
    top, _, h, _ = aug.portrait_box(alpha, np.random.default_rng(0), close_up=1.0)
    assert top + h - 50 >= 0.22 * 340  # its own frame is the close-up: no closer cut


def test_augmented_refine_samples_degrade_the_image_and_keep_the_clean_composite(fake_data):
    cfg = aug.AugmentConfig(photometric=1.0, person_blur=0, head=0)
    item = PeopleMatting(fake_data, "train", SampleSpec("refine", 64, view=64, augment=cfg))[1]
    clean = item["alpha"] * item["fg"] + (1 - item["alpha"]) * item["bg"]
    assert torch.allclose(item["composite"], clean, atol=1e-5)
    assert (item["image"] - item["composite"]).abs().mean() > 0.01


def test_scene_augmentation_is_refused_in_the_mnet_mode(fake_data):
    with pytest.raises(ValueError, match="tnet"):
        PeopleMatting(fake_data, "train", SampleSpec("mnet", 64, augment=aug.AugmentConfig()))


def test_darken_part_darkens_a_smooth_part_of_the_largest_person_only():
    alpha = np.zeros((120, 160), np.float32)
    alpha[10:110, 40:100] = 1  # the person
    alpha[5:20, 130:150] = 1  # someone small at the side
    fg = np.full((120, 160, 3), 0.8, np.float32)
    shares = []
    for seed in range(20):
        out = aug.darken_part(fg, alpha, np.random.default_rng(seed))
        assert out.shape == fg.shape and out.dtype == np.float32
        assert (out <= fg + 1e-6).all() and out.min() >= 0
        assert np.allclose(out[:, :40], fg[:, :40]) and np.allclose(out[:, 100:], fg[:, 100:])
        dark = out[10:110, 40:100].max(2) < 0.8 * 0.3 + 1e-3  # at most 30% of the value
        shares.append(dark.mean())
        assert ndimage.label(dark)[1] <= 8  # a few smooth blobs, not speckle
    assert 0.08 <= min(shares) and max(shares) <= 0.55
    again = aug.darken_part(fg, alpha, np.random.default_rng(0))
    assert np.array_equal(again, aug.darken_part(fg, alpha, np.random.default_rng(0)))
    assert aug.darken_part(fg, np.zeros_like(alpha), np.random.default_rng(0)) is fg


def test_print_part_paints_another_photo_on_a_smooth_part_of_the_largest_person_only():
    alpha = np.zeros((120, 160), np.float32)
    alpha[10:110, 40:100] = 1  # the person
    alpha[5:20, 130:150] = 1  # someone small at the side
    fg = np.full((120, 160, 3), 0.8, np.float32)
    texture = np.random.default_rng(9).random((50, 70, 3)).astype(np.float32)
    shares = []
    for seed in range(20):
        out = aug.print_part(fg, alpha, texture, np.random.default_rng(seed))
        assert out.shape == fg.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert np.allclose(out[:, :40], fg[:, :40]) and np.allclose(out[:, 100:], fg[:, 100:])
        painted = np.abs(out[10:110, 40:100] - fg[10:110, 40:100]).max(2) > 0.05
        shares.append(painted.mean())
        assert ndimage.label(painted)[1] <= 8  # a few smooth blobs, not speckle
        assert out[10:110, 40:100][painted].std() > 0.05  # the photo's texture, not a flat tint
        rim = np.ones((100, 60), bool)
        rim[3:-3, 3:-3] = False  # 5% of the box's shorter side: its outline stays the person's
        assert not painted[rim].any()
    assert 0.02 <= min(shares) and max(shares) <= 0.4
    again = aug.print_part(fg, alpha, texture, np.random.default_rng(0))
    assert np.array_equal(again, aug.print_part(fg, alpha, texture, np.random.default_rng(0)))
    assert aug.print_part(fg, np.zeros_like(alpha), texture, np.random.default_rng(0)) is fg


@pytest.mark.parametrize("mode", ["tnet", "refine"])
@pytest.mark.parametrize("knob", ["dark", "prints"])
def test_repainted_samples_keep_their_alpha(fake_data, mode, knob):
    """White people on black, on their own backgrounds, every sample darkened or painted with
    a (black) background photo: the image is never brighter than its label and stays black off
    the person (nothing moved), and part of the solid person is dark in most samples."""
    _white_people_on_black(fake_data)
    cfg = aug.AugmentConfig(photometric=0, person_blur=0, head=0, occluder=0, crowd=0, small=0,
                            rotate=0, **{knob: 1.0})
    data = PeopleMatting(fake_data, "train", SampleSpec(mode, 64, (60, 90), real=1.0, view=64,
                                                        augment=cfg))
    repainted = 0
    for i in range(len(data)):
        item = data[i]
        image, alpha = item["image"].numpy().max(0), item["alpha"][0].numpy()
        assert (image <= alpha + 0.2).all(), i  # JPEG, estimated foreground
        solid = alpha > 0.99
        repainted += solid.any() and (image[solid] < 0.35).mean() > 0.05
    assert repainted >= len(data) // 2


def test_defocused_blurs_a_person_without_a_dark_fringe():
    alpha = np.zeros((80, 60), np.float32)
    alpha[20:60, 15:45] = 1
    fg = np.ones((80, 60, 3), np.float32)  # junk colours off the person
    fg[alpha > 0] = (0.2, 0.6, 0.9)
    f, a = aug.defocused(fg, alpha, 3.0)
    assert f.shape == fg.shape and a.shape == alpha.shape and f.dtype == a.dtype == np.float32
    assert a.sum() == pytest.approx(alpha.sum(), rel=0.01)
    assert ((a > 0.01) & (a < 0.99)).sum() > 3 * ((alpha > 0) & (alpha < 1)).sum() + 100
    assert np.allclose(f[a > 0.01], (0.2, 0.6, 0.9), atol=1e-3)  # the person's colour only


@pytest.mark.parametrize("mode", ["tnet", "refine"])
@pytest.mark.parametrize("real", [0.0, 1.0])
def test_bystanders_are_background(fake_data, mode, real):
    """White people on black, every sample with bystanders: the person is never darker than
    its label (nothing in front of them), and in most samples someone bright (a blurred white
    bystander) stands where the label is background."""
    _white_people_on_black(fake_data)
    cfg = aug.AugmentConfig(photometric=0, person_blur=0, head=0, occluder=0, crowd=0, small=0,
                            rotate=0, bystanders=1.0)
    data = PeopleMatting(fake_data, "train", SampleSpec(mode, 64, (60, 90), real=real, view=64,
                                                        augment=cfg))
    seen = 0
    for i in range(len(data)):
        item = data[i]
        image, alpha = item["image"].numpy().min(0), item["alpha"][0].numpy()
        assert (image >= alpha - 0.2).all(), i  # JPEG, estimated foreground
        seen += (image[alpha < 0.01] > 0.2).mean() > 0.01
    assert seen >= len(data) // 2


def test_source_weights_give_each_source_an_equal_share(fake_data):
    names = ["ccp_0001", "ccp_0002", "ccp_0003", "p0"]
    (fake_data / "people/train.txt").write_text("\n".join(names))
    for i, name in enumerate(names[:3]):
        for sub, ext in (("images", "jpg"), ("alphas", "png")):
            src = fake_data / "people" / sub / f"p{i + 1}.{ext}"
            src.rename(src.with_name(f"{name}.{ext}"))
    data = PeopleMatting(fake_data, "train", SampleSpec("tnet", 64))
    w = data.source_weights()
    assert [source_of(n) for n in names] == ["ccp", "ccp", "ccp", "other"]
    assert w[:3].sum() == pytest.approx(0.5) and w[3] == pytest.approx(0.5)
