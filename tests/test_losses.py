import math

import pytest
import torch
import torch.nn.functional as F

from shm.training import losses


def test_charbonnier_on_hand_made_values():
    pred = torch.tensor([0.0, 0.5, 1.0])
    target = torch.tensor([0.0, 0.0, 0.25])
    expected = (1e-6 + math.sqrt(0.25 + 1e-12) + math.sqrt(0.5625 + 1e-12)) / 3
    assert losses.charbonnier(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_composition_loss_is_zero_for_the_true_alpha():
    fg, bg = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    alpha = torch.rand(1, 1, 4, 4)
    image = alpha * fg + (1 - alpha) * bg
    assert losses.composition_loss(alpha, fg, bg, image).item() == pytest.approx(1e-6, abs=1e-6)


def test_prediction_loss_weighs_alpha_and_composition_terms_that_differ():
    # fg 0.5, bg 0: the composite's error is half the alpha's, so dropping either term shows
    fg, bg = torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2)
    gt = torch.ones(1, 1, 2, 2)
    batch = {"alpha": gt, "fg": fg, "bg": bg, "image": gt * fg}
    pred = torch.zeros(1, 1, 2, 2)
    # L_alpha = 1, L_comp = 0.5 -> L_p = 0.75
    assert losses.prediction_loss(pred, batch).item() == pytest.approx(0.75, rel=1e-5)
    # an augmented sample's composition target is its clean composite, not the degraded image
    noisy = {**batch, "image": torch.rand(1, 3, 2, 2), "composite": gt * fg}
    assert losses.prediction_loss(pred, noisy).item() == pytest.approx(0.75, rel=1e-5)


def test_total_loss_adds_a_hundredth_of_the_mean_trimap_loss_over_views():
    fg, bg = torch.full((2, 3, 2, 2), 0.5), torch.zeros(2, 3, 2, 2)
    gt = torch.ones(2, 1, 2, 2)
    batch = {"alpha": gt, "fg": fg, "bg": bg, "image": gt * fg}
    pred = torch.zeros(2, 1, 2, 2)
    uniform = torch.zeros(1, 3, 2, 2)  # cross-entropy ln 3
    sure = torch.tensor([10.0, 0, 0])[None, :, None, None].expand(1, 3, 4, 4)  # right: ~0
    classes = [torch.full((1, 2, 2), 2), torch.zeros(1, 4, 4, dtype=torch.long)]
    l_t = (math.log(3) + F.cross_entropy(sure, classes[1]).item()) / 2
    got = losses.total_loss(pred, batch, [uniform, sure], classes).item()
    assert got == pytest.approx(0.75 + 0.01 * l_t, rel=1e-5)
